"""Malformed configs and batches get errors that say what to fix, and change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from plinth.sparse.config import (
    Admission,
    Eviction,
    EvictionPolicy,
    OptimizerConfig,
    OptimizerKind,
    StorageDType,
    TableConfig,
)
from plinth.sparse.table import EmbeddingTable, TableInputError

DIM = 4


@pytest.fixture
def table() -> EmbeddingTable:
    t = EmbeddingTable(TableConfig(name="c1", dim=DIM))
    t.pull(np.arange(10, dtype=np.int64))
    return t


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: OptimizerConfig(lr=-0.1), r"optimizer.lr must be a finite number > 0"),
        (lambda: OptimizerConfig(lr=float("nan")), r"optimizer.lr"),
        (lambda: OptimizerConfig(kind="rmsprop"), r"'rmsprop' is not one of 'sgd', 'adagrad'"),
        (lambda: OptimizerConfig(kind="adam", beta1=1.0), r"optimizer.beta1 must be in \[0, 1\)"),
        (lambda: OptimizerConfig(kind="ftrl", l1=-1), r"optimizer.l1 must be a finite number"),
        (lambda: Admission(min_count=0), r"admission.min_count must be an integer >= 1"),
        (lambda: Admission(probability=0.0), r"admission.probability must be in \(0, 1\]"),
        (lambda: Eviction(ttl_steps=0), r"eviction.ttl_steps must be an integer >= 1"),
        (lambda: Eviction(max_rows=-5), r"eviction.max_rows"),
        (lambda: Eviction(policy="fifo"), r"'fifo' is not one of 'lru', 'lfu'"),
        (lambda: TableConfig(name="c", dim=0), r"dim must be an integer in 1..4096"),
        (lambda: TableConfig(name="", dim=4), r"name must be a non-empty string"),
        (lambda: TableConfig(name="c", dim=4, storage_dtype="bfloat16"), r"storage_dtype"),
        (lambda: TableConfig(name="c", dim=4, init_std=-1), r"init_std"),
        (lambda: TableConfig(name="c", dim=4, optimizer={"kind": "sgd", "lrr": 1}),
         r"unknown optimizer keys \['lrr'\]"),
        (lambda: TableConfig.from_dict({"name": "c", "dim": 4, "optim": {}}),
         r"unknown keys \['optim'\]"),
    ],
)
def test_bad_configs(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_configs_from_plain_values_round_trip() -> None:
    cfg = TableConfig(name="c", dim=8, optimizer={"kind": "FTRL", "alpha": 0.1, "l1": 1.0},
                      admission={"min_count": 3}, eviction={"policy": "lfu", "max_rows": 10},
                      storage_dtype="float16")
    assert cfg.optimizer.kind is OptimizerKind.FTRL
    assert cfg.eviction.policy is EvictionPolicy.LFU
    assert cfg.storage_dtype is StorageDType.FLOAT16
    assert TableConfig.from_dict(cfg.to_dict()) == cfg
    assert OptimizerConfig(kind="adam").eps == 1e-8
    assert OptimizerConfig(kind="adagrad").eps == 1e-10


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        (np.zeros((2, 3), dtype=np.int64), r"1-D array .* got shape \(2, 3\)"),
        (np.array([1.5, 2.0]), r"integer feature ids \(int64\), got dtype float64"),
        (np.array(["a", "b"]), r"hash raw values"),
    ],
)
def test_bad_ids(table: EmbeddingTable, ids: np.ndarray, match: str) -> None:
    with pytest.raises(TableInputError, match=match):
        table.pull(ids)
    with pytest.raises(TypeError, match=match):  # also a TypeError, for either except
        table.pull(ids, train=False)


def test_other_integer_ids_are_accepted(table: EmbeddingTable) -> None:
    a = table.pull(np.arange(5, dtype=np.int32), train=False)
    b = table.pull([0, 1, 2, 3, 4], train=False)
    np.testing.assert_array_equal(a, b)
    assert table.pull(np.empty(0, dtype=np.int64)).shape == (0, DIM)


@pytest.mark.parametrize(
    ("grads", "match"),
    [
        (np.zeros((3, DIM), np.float32), r"shape \(len\(ids\), dim\) = \(2, 4\), got \(3, 4\)"),
        (np.zeros((2, DIM + 1), np.float32), r"= \(2, 4\), got \(2, 5\)"),
        (np.zeros((2, DIM), np.int64), r"floating point \(float32\), got dtype int64"),
        (np.array([[np.nan] * DIM, [0.0] * DIM], np.float32), r"NaN or infinity"),
    ],
)
def test_bad_grads_change_nothing(table: EmbeddingTable, grads: np.ndarray, match: str) -> None:
    ids = np.array([1, 2], dtype=np.int64)
    before = table.state_dict()
    with pytest.raises(TableInputError, match=match):
        table.push(ids, grads)
    after = table.state_dict()
    np.testing.assert_array_equal(before["values"], after["values"])
    assert table.export_delta()["ids"].size == 10  # only the initial creations


def test_float64_grads_are_converted(table: EmbeddingTable) -> None:
    assert table.push(np.array([1], dtype=np.int64), np.ones((1, DIM))) == 1


def test_bad_clock(table: EmbeddingTable) -> None:
    table.advance(5)
    with pytest.raises(TableInputError, match=r"step went backwards \(3 < current 5\)"):
        table.advance(3)
    with pytest.raises(TableInputError, match="must be finite seconds"):
        table.advance(now=float("inf"))
    with pytest.raises(TableInputError, match=r"< 2\*\*32"):
        table.advance(2**32)
    assert table.step == 5


def test_bad_constructor_arguments() -> None:
    with pytest.raises(TableInputError, match="TableConfig"):
        EmbeddingTable({"name": "c", "dim": 4})  # type: ignore[arg-type]
    with pytest.raises(TableInputError, match="initial_capacity must be a positive integer"):
        EmbeddingTable(TableConfig(name="c", dim=4), initial_capacity=0)
