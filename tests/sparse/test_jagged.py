"""KeyedJaggedTensor and Batch: layout, lazy lengths/offsets, constructors, validation."""

import numpy as np
import pytest

from plinth.sparse.jagged import Batch, BatchError, JaggedTensor, KeyedJaggedTensor


def _kjt():
    # user: 1 id per sample; tags: 2, 0, 3 ids (the docstring's picture)
    return KeyedJaggedTensor.from_lengths(
        ["user", "tags"], [10, 11, 12, 20, 21, 22, 23, 24], [1, 1, 1, 2, 0, 3]
    )


def test_layout_accessors():
    k = _kjt()
    k.validate()
    assert k.stride() == 3 and k.keys() == ["user", "tags"]
    np.testing.assert_array_equal(k.offsets(), [0, 1, 2, 3, 5, 5, 8])
    np.testing.assert_array_equal(k.length_per_key(), [3, 5])
    np.testing.assert_array_equal(k.offset_per_key(), [0, 3, 8])
    assert k["tags"].to_lists() == [[20, 21], [], [22, 23, 24]]
    assert k["user"].to_lists() == [[10], [11], [12]]
    with pytest.raises(KeyError, match="keys are"):
        k["nope"]


def test_from_offsets_derives_lengths_lazily():
    k = KeyedJaggedTensor.from_offsets(["user", "tags"], _kjt().values(), [0, 1, 2, 3, 5, 5, 8])
    k.validate()
    np.testing.assert_array_equal(k.lengths(), [1, 1, 1, 2, 0, 3])


def test_from_dict_concat_and_empty():
    d = _kjt().to_dict()
    k = KeyedJaggedTensor.from_dict(d)
    np.testing.assert_array_equal(k.values(), _kjt().values())
    extra = KeyedJaggedTensor.from_dict(
        {"w": JaggedTensor(np.array([7, 8, 9]), np.array([1, 1, 1]), np.array([0.5, 1, 2], np.float32))}
    )
    c = KeyedJaggedTensor.concat([_kjt(), extra])
    c.validate()
    assert c.keys() == ["user", "tags", "w"]
    np.testing.assert_array_equal(c.weights()[-3:], [0.5, 1, 2])
    np.testing.assert_array_equal(c.weights()[:8], np.ones(8))  # filled for keys without
    e = KeyedJaggedTensor.empty(["a", "b"], 4)
    e.validate()
    assert e.stride() == 4 and len(e.values()) == 0
    with pytest.raises(BatchError, match="repeat keys"):
        KeyedJaggedTensor.concat([_kjt(), _kjt()])
    with pytest.raises(BatchError, match="batch sizes"):
        KeyedJaggedTensor.concat([_kjt(), KeyedJaggedTensor.empty(["z"], 2)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: KeyedJaggedTensor.from_lengths(["a"], [1, 2], [1, 2]), "lengths sum to 3"),
        (lambda: KeyedJaggedTensor.from_lengths(["a", "b"], [1, 2], [1, 1, 0], ), "slots"),
        (lambda: KeyedJaggedTensor(["a"], np.array([1.0, 2.0]), lengths=np.array([1, 1])),
         "hash them first"),
        (lambda: KeyedJaggedTensor.from_lengths(["a", "a"], [1, 2], [1, 1]), "more than once"),
        (lambda: KeyedJaggedTensor.from_lengths(["a"], [1, 2], [3, -1]), ">= 0"),
        (lambda: KeyedJaggedTensor.from_offsets(["a"], [1, 2], [0, 2, 1]), "end at len"),
        (lambda: KeyedJaggedTensor.from_lengths(["a"], [1, 2], [1, 1], weights=[1.0]),
         "shape of values"),
    ],
)
def test_validate_says_what_is_wrong(make, message):
    with pytest.raises(BatchError, match=message):
        make().validate()


def test_batch_validation():
    k = _kjt()
    ok = Batch(k, np.zeros((3, 2), np.float32), np.array([0, 1, 0], np.float32))
    ok.validate()
    assert ok.size == 3
    with pytest.raises(BatchError, match="same number of samples"):
        Batch(k, np.zeros((2, 2), np.float32), np.array([0, 1], np.float32)).validate()
    bad_dense = np.zeros((3, 2), np.float32)
    bad_dense[1, 1] = np.nan
    with pytest.raises(BatchError, match="column 1 of sample 1"):
        Batch(k, bad_dense, np.array([0, 1, 0], np.float32)).validate()
    with pytest.raises(BatchError, match=r"in \[0, 1\]"):
        Batch(k, np.zeros((3, 2), np.float32), np.array([0, 2, 0], np.float32)).validate()
    with pytest.raises(BatchError, match="float32"):
        Batch(k, np.zeros((3, 2)), np.array([0, 1, 0], np.float32)).validate()
