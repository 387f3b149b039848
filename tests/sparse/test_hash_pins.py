"""Pinned hash outputs. Feature ids, index slots, initial values, sketch cells and admission
draws all derive from the splitmix64 finalizer; checkpoints and delta exports store ids and
rely on re-deriving the rest, so these values must never change."""

import numpy as np

from plinth.sparse import _hash
from plinth.sparse import _kernels as K
from plinth.sparse.hashing import hash_ints, hash_strings, missing_id, mix64
from plinth.sparse.sketch import sketch_add


def test_mix64_values_are_pinned():
    x = np.array([0, 1, -1, 12345, 2**62], dtype=np.int64)
    assert mix64(x).tolist() == [
        -2152535657050944081,
        -7995527694508729151,
        -1956407806741107680,
        2454886589211414944,
        47939714376772075,
    ]
    # The compiled scalar finalizer agrees with the vectorised one.
    assert int(_hash.mix64(np.uint64(12345))) == 2454886589211414944


def test_feature_ids_are_pinned():
    assert hash_ints([0, 1, 42, -7], "user").tolist() == [
        3427823706994688050,
        -4861702768239885008,
        -6092011746467066761,
        -1333149620746896084,
    ]
    assert hash_ints([3], 99).tolist() == [-7703713058508741375]
    assert hash_strings(["", "a", "héllo", None], "city").tolist() == [
        -5515704685501076504,
        6616196663446311303,
        -3119176969212890268,
        205307391820832189,
    ]
    assert missing_id("city") == 205307391820832189
    assert missing_id(0) == 1510846260818382811


def test_slots_initial_values_and_sketch_cells_are_pinned():
    assert [int(K._home(np.int64(k), np.int64(1000))) for k in (0, 1, -1, 12345)] == [
        174,
        928,
        306,
        454,
    ]
    out = np.empty(5, np.float32)
    _hash.normal_init(np.uint64(7), np.int64(12345), np.float32(1.0), out)
    assert out.view(np.uint32).tolist() == [
        1057626884,
        1049729904,
        1059219537,
        3210396338,
        3124051413,
    ]
    cells = np.zeros((3, 1000), np.uint8)
    sketch_add(cells, np.uint64(5), np.int64(12345))
    assert np.argwhere(cells).tolist() == [[0, 721], [1, 280], [2, 880]]
