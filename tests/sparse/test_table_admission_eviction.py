"""Admission (count-min sketch, probability) and eviction (TTL, max_rows by LRU/LFU)."""

from __future__ import annotations

import numpy as np

from plinth.sparse.config import (
    Admission,
    Eviction,
    EvictionPolicy,
    OptimizerConfig,
    OptimizerKind,
    TableConfig,
)
from plinth.sparse.sketch import CountMinSketch
from plinth.sparse.table import EmbeddingTable

DIM = 4


def _table(seed: int = 0, **kw: object) -> EmbeddingTable:
    return EmbeddingTable(TableConfig(name="a", dim=DIM, seed=seed,
                                      optimizer=OptimizerConfig(kind=OptimizerKind.SGD, lr=0.1),
                                      **kw))


def _ids(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


# ---------------------------------------------------------------- admission


def test_min_count_admits_on_the_nth_occurrence() -> None:
    t = _table(admission=Admission(min_count=3))
    init = t.pull(_ids(7), train=False)
    t.pull(_ids(7))
    t.pull(_ids(7))
    assert len(t) == 0
    # Not admitted yet: reads the initializer's value, gradients are ignored.
    np.testing.assert_array_equal(t.pull(_ids(7)), init)  # third occurrence admits
    assert t.contains(_ids(7)).all()
    np.testing.assert_array_equal(t.pull(_ids(7), train=False), init)


def test_occurrences_within_one_batch_count() -> None:
    t = _table(admission=Admission(min_count=3))
    t.pull(_ids(5, 5, 6, 5))
    assert t.contains(_ids(5, 6)).tolist() == [True, False]


def test_eval_pulls_neither_count_nor_create() -> None:
    t = _table(admission=Admission(min_count=2))
    for _ in range(5):
        t.pull(_ids(1, 2), train=False)
    assert len(t) == 0
    t.pull(_ids(1))
    assert len(t) == 0
    t.pull(_ids(1))
    assert len(t) == 1


def test_rejected_ids_take_no_memory() -> None:
    t = _table(admission=Admission(min_count=1000, sketch_width=1024))
    before = t.memory_bytes()
    ids = np.arange(200_000, dtype=np.int64)
    a = t.pull(ids)
    assert len(t) == 0
    assert t.memory_bytes() == before
    assert t.push(ids, np.ones((ids.size, DIM), np.float32)) == 0
    np.testing.assert_array_equal(t.pull(ids, train=False), a)


def test_probability_admission_is_reproducible_and_about_p() -> None:
    ids = np.arange(20_000, dtype=np.int64)
    a, b, c = (_table(seed=s, admission=Admission(probability=0.3)) for s in (1, 1, 2))
    for t in (a, b, c):
        t.pull(ids)
    ma, mb, mc = (t.contains(ids) for t in (a, b, c))
    np.testing.assert_array_equal(ma, mb)  # same seed: same admitted ids
    assert not np.array_equal(ma, mc)  # another seed: another draw
    assert 0.27 < ma.mean() < 0.33
    # A rejected id gets a new draw at a later step, so frequent ids get in eventually.
    a.advance()
    a.pull(ids)
    assert 0.47 < a.contains(ids).mean() < 0.55  # 1 - 0.7^2 = 0.51


def test_count_min_sketch_never_underestimates_and_saturates() -> None:
    sk = CountMinSketch(width=64, depth=3, max_count=5, seed=1)
    assert sk.cells.dtype == np.uint8
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 500, size=3000).astype(np.int64)
    sk.add(keys)
    true = np.bincount(keys, minlength=500)
    est = sk.estimate(np.arange(500, dtype=np.int64))
    assert (est >= np.minimum(true, 255)).all()
    assert CountMinSketch(width=64, depth=2, max_count=1000).cells.dtype == np.uint16
    big = CountMinSketch(width=16, depth=1, max_count=10)
    big.add(np.zeros(1000, dtype=np.int64))
    assert big.estimate(_ids(0))[0] == 255


def test_sketch_is_exact_without_collisions() -> None:
    sk = CountMinSketch(width=1 << 16, depth=4, max_count=100, seed=3)
    keys = np.repeat(np.arange(50, dtype=np.int64), np.arange(50))
    sk.add(keys)
    np.testing.assert_array_equal(sk.estimate(np.arange(50, dtype=np.int64)), np.arange(50))


# ---------------------------------------------------------------- eviction


def test_ttl_steps() -> None:
    t = _table(eviction=Eviction(ttl_steps=2))
    t.pull(_ids(1, 2, 3))  # step 0
    t.advance(1)
    t.push(_ids(2), np.ones((1, DIM), np.float32))  # 2 updated at step 1
    t.advance(3)
    t.pull(_ids(4))  # created at step 3
    assert t.evict() == 2  # 1 and 3: idle 3 steps > 2
    assert t.contains(_ids(1, 2, 3, 4)).tolist() == [False, True, False, True]
    t.advance(4)
    assert t.evict() == 1  # 2: idle 3 steps
    assert len(t) == 1


def test_ttl_seconds_with_injected_clock() -> None:
    t = _table(eviction=Eviction(ttl_seconds=60.0))
    t.advance(now=1_000.0)
    t.pull(_ids(1, 2))
    t.advance(now=1_050.0)
    t.push(_ids(2), np.ones((1, DIM), np.float32))
    t.advance(now=1_061.0)
    assert t.evict() == 1
    assert t.contains(_ids(1, 2)).tolist() == [False, True]
    t.advance(now=1_200.0)
    assert t.evict() == 1
    assert len(t) == 0


def test_evicted_id_comes_back_fresh() -> None:
    t = _table(eviction=Eviction(ttl_steps=1))
    init = t.pull(_ids(9), train=False)
    t.pull(_ids(9))
    t.push(_ids(9), np.ones((1, DIM), np.float32))
    t.advance(5)
    assert t.evict() == 1
    np.testing.assert_array_equal(t.pull(_ids(9)), init)
    assert t.state_dict()["counts"].tolist() == [0]


def test_max_rows_lru_keeps_the_most_recent_rows() -> None:
    t = _table(eviction=Eviction(max_rows=100, slack=0.1, policy=EvictionPolicy.LRU))
    for step in range(1, 31):
        t.advance(step)
        ids = np.arange(step * 10, step * 10 + 10, dtype=np.int64)
        t.pull(ids)
        t.push(ids, np.zeros((10, DIM), np.float32))
        assert len(t) <= 110 + 10  # at most (1 + slack) * max_rows plus one batch
    t.evict()
    assert len(t) <= 100
    sd = t.state_dict()
    # Everything kept is newer than everything evicted.
    kept_steps = sd["last_step"]
    assert kept_steps.min() >= 30 - len(t) // 10
    assert t.contains(np.arange(300, 310, dtype=np.int64)).all()


def test_max_rows_lfu_keeps_the_most_frequent_rows() -> None:
    t = _table(eviction=Eviction(max_rows=50, slack=0.0, policy=EvictionPolicy.LFU))
    hot = np.arange(20, dtype=np.int64)
    t.advance(1)
    t.pull(hot)
    for _ in range(5):
        t.push(hot, np.zeros((20, DIM), np.float32))
    for step in range(2, 12):
        t.advance(step)
        cold = np.arange(1000 + step * 10, 1000 + step * 10 + 10, dtype=np.int64)
        t.pull(cold)
        t.push(cold, np.zeros((10, DIM), np.float32))
    t.advance(100)
    t.evict()
    assert len(t) == 50
    assert t.contains(hot).all()


def test_rows_of_the_current_step_wait_for_their_gradients() -> None:
    # LFU: freshly created rows have count 0, yet the automatic cap must not drop rows
    # pulled in this step before their push arrives.
    t = _table(eviction=Eviction(max_rows=10, slack=0.0, policy=EvictionPolicy.LFU))
    t.advance(1)
    old = np.arange(10, dtype=np.int64)
    t.pull(old)
    t.push(old, np.zeros((10, DIM), np.float32))
    t.advance(2)
    new = np.arange(100, 105, dtype=np.int64)
    t.pull(new)
    assert t.push(new, np.ones((5, DIM), np.float32)) == 5  # all still present
    assert t.contains(new).all()
    assert len(t) == 10


def test_evict_without_policy_limits_is_a_no_op() -> None:
    t = _table()
    t.pull(np.arange(100, dtype=np.int64))
    t.advance(10**6)
    assert t.evict() == 0
    assert len(t) == 100


def test_a_training_pull_evicts_instead_of_exceeding_the_cap() -> None:
    # LRU, so the rows read first in the batch (the oldest) would be the first victims if
    # the pull did not spare what it has already read.
    t = _table(eviction=Eviction(max_rows=100, slack=0.1, policy=EvictionPolicy.LRU))
    t.advance(1)
    old = np.arange(10, dtype=np.int64)
    t.pull(old)
    t.push(old, np.zeros((10, DIM), np.float32))
    for step in range(2, 12):
        t.advance(step)
        ids = np.arange(step * 100, step * 100 + 10, dtype=np.int64)
        t.pull(ids)
        t.push(ids, np.zeros((10, DIM), np.float32))
    assert len(t) == 110  # the cap (1 + slack) * max_rows, reached without evicting
    t.advance(12)
    batch = np.concatenate([old, np.arange(5000, 5030, dtype=np.int64)])
    t.pull(batch)
    assert len(t) <= 110
    assert t.contains(batch).all()  # everything this step read is still there
    assert t.push(batch, np.ones((40, DIM), np.float32)) == 40


def test_compete_admits_newcomers_only_above_the_cut() -> None:
    t = _table(admission=Admission(min_count=2, compete=True),
               eviction=Eviction(max_rows=10, slack=0.0, policy=EvictionPolicy.LFU))
    t.advance(1)
    ids = np.arange(10, dtype=np.int64)
    t.pull(ids)
    t.pull(ids)  # second sighting: admitted, the count starts at the sketch's 2
    assert len(t) == 10
    assert t.state_dict()["counts"].tolist() == [2] * 10
    for _ in range(10):
        t.push(ids[:5], np.zeros((5, DIM), np.float32))  # hot: count 12
    t.push(ids[5:], np.zeros((5, DIM), np.float32))  # lukewarm: count 3
    t.advance(2)
    # A newcomer at the cap makes the table evict (one lukewarm row, count 3); from then
    # on newcomers must have been seen more often than that cut, this one included.
    t.pull(_ids(100, 100))
    assert len(t) == 9 and t.contains(ids[:5]).all()
    assert not t.contains(_ids(100)).any()
    t.advance(3)
    for _ in range(3):
        t.pull(_ids(200))
    assert not t.contains(_ids(200)).any()  # 3 sightings do not beat the cut at 3
    t.pull(_ids(200))
    assert t.contains(_ids(200)).all()  # the 4th does, into the room the eviction left
    assert t.state_dict()["counts"][t.state_dict()["ids"] == 200].tolist() == [4]
    assert len(t) == 10 and t.contains(ids[:5]).all()


def test_compete_needs_an_lfu_cap() -> None:
    import pytest

    with pytest.raises(ValueError, match="admission.compete needs eviction.max_rows"):
        TableConfig(name="a", dim=DIM, admission=Admission(compete=True))
    with pytest.raises(ValueError, match="admission.compete needs"):
        TableConfig(name="a", dim=DIM, admission=Admission(compete=True),
                    eviction=Eviction(max_rows=5, policy="lru"))
