"""state_dict round trips, delta exports holding exactly the changed rows, float16 storage."""

from __future__ import annotations

import io

import numpy as np
import pytest

from plinth.sparse import _kernels as K
from plinth.sparse.config import (
    Admission,
    Eviction,
    OptimizerConfig,
    OptimizerKind,
    TableConfig,
)
from plinth.sparse.table import EmbeddingTable

DIM = 8


def _cfg(**kw: object) -> TableConfig:
    base: dict = {"name": "s", "dim": DIM, "seed": 3,
                  "optimizer": OptimizerConfig(kind=OptimizerKind.ADAM, lr=0.01)}
    base.update(kw)
    return TableConfig(**base)


def _train(t: EmbeddingTable, rng: np.random.Generator, steps: int, vocab: int = 500) -> None:
    for _ in range(steps):
        ids = rng.integers(0, vocab, size=64).astype(np.int64)
        t.pull(ids)
        t.push(ids, rng.normal(size=(64, DIM)).astype(np.float32))
        t.advance(now=1000.0 + t.step)


def _by_id(d: dict) -> dict:
    order = np.argsort(d["ids"])
    return {k: d[k][order] for k in ("ids", "values", "optimizer_state", "counts",
                                     "last_step", "last_time")}


def _assert_same(a: dict, b: dict) -> None:
    a, b = _by_id(a), _by_id(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("storage", ["float32", "float16"])
@pytest.mark.parametrize("kind", list(OptimizerKind))
def test_state_dict_round_trip_is_identical(storage: str, kind: OptimizerKind) -> None:
    cfg = _cfg(storage_dtype=storage, optimizer=OptimizerConfig(kind=kind, lr=0.05),
               admission=Admission(min_count=2))
    t = EmbeddingTable(cfg)
    rng = np.random.default_rng(0)
    _train(t, rng, 20)
    sd = t.state_dict()
    # Through an .npz file, as a checkpoint would.
    buf = io.BytesIO()
    np.savez(buf, **sd)
    buf.seek(0)
    loaded = dict(np.load(buf))
    r = EmbeddingTable.from_state_dict(loaded)
    sd2 = r.state_dict()
    assert sd2.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(np.asarray(sd2[k]), np.asarray(sd[k]), err_msg=k)
    assert r.config == t.config and r.step == t.step and r.now == t.now
    # Training both further gives identical tables: optimizer state, counts and the
    # admission sketch all came back.
    _train(t, np.random.default_rng(1), 10)
    _train(r, np.random.default_rng(1), 10)
    _assert_same(t.state_dict(), r.state_dict())
    probe = np.arange(600, dtype=np.int64)
    np.testing.assert_array_equal(t.pull(probe, train=False), r.pull(probe, train=False))


def test_delta_holds_exactly_the_changed_rows() -> None:
    t = EmbeddingTable(_cfg())
    rng = np.random.default_rng(0)
    _train(t, rng, 5)
    first = t.export_delta()
    assert set(first["ids"].tolist()) == set(t.state_dict()["ids"].tolist())
    assert t.export_delta()["ids"].size == 0  # nothing changed since

    pulled_only = np.array([10_001, 10_002], dtype=np.int64)  # created, never pushed
    pushed = np.array([1, 2, 3, 3], dtype=np.int64)
    t.pull(np.concatenate([pulled_only, pushed]))
    t.push(pushed, np.ones((4, DIM), np.float32))
    t.pull(np.array([4, 5], dtype=np.int64), train=False)  # reads change nothing
    t.remove(np.array([6, 7, 10_002], dtype=np.int64))
    d = t.export_delta()
    assert sorted(d["ids"].tolist()) == [1, 2, 3, 10_001]
    present_before = set(first["ids"].tolist())
    assert set(d["evicted_ids"].tolist()) == {6, 7} & present_before
    # The delta's rows are the table's current rows.
    cur = _by_id(t.state_dict())
    pos = np.searchsorted(cur["ids"], d["ids"])
    np.testing.assert_array_equal(cur["values"][pos], d["values"])
    np.testing.assert_array_equal(cur["optimizer_state"][pos], d["optimizer_state"])


def test_evicted_then_recreated_id_is_a_row_not_an_eviction() -> None:
    t = EmbeddingTable(_cfg(eviction=Eviction(ttl_steps=1)))
    ids = np.array([1, 2], dtype=np.int64)
    t.pull(ids)
    t.export_delta()
    t.advance(5)
    assert t.evict() == 2
    t.pull(np.array([1], dtype=np.int64))
    d = t.export_delta()
    assert d["ids"].tolist() == [1]
    assert d["evicted_ids"].tolist() == [2]


def test_deltas_applied_to_a_copy_reproduce_the_table() -> None:
    t = EmbeddingTable(_cfg(eviction=Eviction(max_rows=300, slack=0.05)))
    rng = np.random.default_rng(4)
    _train(t, rng, 10)
    replica = EmbeddingTable.from_state_dict(t.state_dict())
    t.export_delta()  # the replica starts from this point
    for _ in range(4):
        _train(t, rng, 8, vocab=2000)  # grows past max_rows: evictions happen
        t.evict()
        replica.apply_delta(t.export_delta())
        _assert_same(t.state_dict(), replica.state_dict())
    probe = np.arange(2000, dtype=np.int64)
    np.testing.assert_array_equal(t.pull(probe, train=False), replica.pull(probe, train=False))


def test_bad_delta_changes_nothing() -> None:
    t = EmbeddingTable(_cfg())
    _train(t, np.random.default_rng(0), 3)
    d = t.export_delta()
    other = EmbeddingTable(_cfg(dim=4, name="other"))
    other.pull(np.arange(50, dtype=np.int64))
    before = other.state_dict()
    with pytest.raises(ValueError, match="values has shape"):
        other.apply_delta({**d, "evicted_ids": np.arange(50, dtype=np.int64)})
    _assert_same(before, other.state_dict())


def test_state_dict_errors_say_what_is_wrong() -> None:
    t = EmbeddingTable(_cfg())
    _train(t, np.random.default_rng(0), 2)
    sd = t.state_dict()
    with pytest.raises(ValueError, match="lacks"):
        EmbeddingTable.from_state_dict({k: v for k, v in sd.items() if k != "values"})
    with pytest.raises(ValueError, match="dtype float64, expected float32"):
        EmbeddingTable.from_state_dict({**sd, "values": sd["values"].astype(np.float64)})
    with pytest.raises(ValueError, match="format_version"):
        EmbeddingTable.from_state_dict({**sd, "format_version": 99})


def test_float16_conversion_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.normal(scale=s, size=20_000).astype(np.float32) for s in (1e-6, 1e-3, 1, 1e3, 1e5)
    ] + [np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65520, 6e-8, 3e-8, 1e-9],
                  dtype=np.float32)])
    h = np.empty(x.size, dtype=np.uint16)
    K.to_half(x, h)
    with np.errstate(over="ignore"):  # 1e5 overflows to inf, on purpose
        want16 = x.astype(np.float16)
    np.testing.assert_array_equal(h, want16.view(np.uint16))
    allh = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    back = np.empty(allh.size, dtype=np.float32)
    K.from_half(allh, back)
    want = allh.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(back), nan)
    np.testing.assert_array_equal(back[~nan], want[~nan])


def test_memory_is_close_to_the_lower_bound() -> None:
    t = EmbeddingTable(_cfg(dim=16, optimizer=OptimizerConfig(kind=OptimizerKind.ADAGRAD)),
                       initial_capacity=100_000)
    t.pull(np.arange(100_000, dtype=np.int64))
    per_row = t.memory_bytes() / len(t)
    assert per_row < 1.5 * t.lower_bound_bytes_per_row()
