"""The table against a dict reference under random insert / lookup / update / grow / evict
sequences, including incremental rehash spread over many operations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plinth.sparse import table as table_mod
from plinth.sparse.config import Eviction, OptimizerConfig, OptimizerKind, TableConfig
from plinth.sparse.table import EmbeddingTable

DIM = 4


def _table(initial_capacity: int = 16, **eviction: object) -> EmbeddingTable:
    cfg = TableConfig(name="t", dim=DIM, init_std=0.5,
                      optimizer=OptimizerConfig(kind=OptimizerKind.SGD, lr=1.0),
                      eviction=Eviction(**eviction))
    return EmbeddingTable(cfg, initial_capacity=initial_capacity)


class Reference:
    """What the table should hold: id -> (values, last update step)."""

    def __init__(self, table: EmbeddingTable) -> None:
        self.t = table
        self.rows: dict[int, tuple[np.ndarray, int]] = {}

    def pull(self, ids: np.ndarray) -> None:
        before = self.t.pull(ids, train=False)  # absent ids read their initial value
        got = self.t.pull(ids)
        np.testing.assert_array_equal(got, before)
        for i, k in enumerate(ids.tolist()):
            if k in self.rows:
                np.testing.assert_array_equal(got[i], self.rows[k][0])
            else:
                self.rows[k] = (got[i].copy(), self.t.step)

    def push(self, ids: np.ndarray, grads: np.ndarray) -> None:
        n = self.t.push(ids, grads)
        acc: dict[int, np.ndarray] = {}
        for i, k in enumerate(ids.tolist()):
            if k in self.rows:
                acc[k] = acc.get(k, np.zeros(DIM, np.float32)) + grads[i]
        assert n == len(acc)
        for k, g in acc.items():
            self.rows[k] = (self.rows[k][0] - g, self.t.step)

    def remove(self, ids: np.ndarray) -> None:
        removed = self.t.remove(ids)
        present = {k for k in ids.tolist() if k in self.rows}
        assert removed == len(present)
        for k in present:
            del self.rows[k]

    def check(self) -> None:
        assert len(self.t) == len(self.rows)
        if not self.rows:
            return
        ids = np.fromiter(self.rows, dtype=np.int64)
        assert self.t.contains(ids).all()
        want = np.stack([self.rows[k][0] for k in ids.tolist()])
        np.testing.assert_allclose(self.t.pull(ids, train=False), want, rtol=0, atol=1e-5)


ids_st = st.lists(st.integers(min_value=-300, max_value=300), min_size=0, max_size=60).map(
    lambda xs: np.array(xs, dtype=np.int64)
)
op_st = st.one_of(
    st.tuples(st.just("pull"), ids_st),
    st.tuples(st.just("push"), ids_st),
    st.tuples(st.just("remove"), ids_st),
    st.tuples(st.just("advance"), st.integers(min_value=0, max_value=3)),
    st.tuples(st.just("ttl"), st.integers(min_value=1, max_value=4)),
)


@pytest.mark.parametrize("slow_migration", [False, True])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_st, min_size=1, max_size=40), seed=st.integers(0, 2**16))
def test_table_matches_dict(slow_migration: bool, ops: list, seed: int,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    if slow_migration:
        # Migrate one slot per id per operation so old and new slot arrays coexist for
        # many operations, and lookups, inserts and deletes run during the rehash.
        monkeypatch.setattr(table_mod, "_MIGRATE_PER_ID", 1)
        monkeypatch.setattr(table_mod, "_MIGRATE_MIN", 1)
    rng = np.random.default_rng(seed)
    t = _table()
    ref = Reference(t)
    for op, arg in ops:
        if op == "pull":
            ref.pull(arg)
        elif op == "push":
            grads = rng.integers(-4, 5, size=(arg.shape[0], DIM)).astype(np.float32) / 4
            ref.push(arg, grads)
        elif op == "remove":
            ref.remove(arg)
        elif op == "advance":
            t.advance(t.step + arg)
        else:  # TTL eviction: a table with the same rows and a TTL
            stale = [k for k, (_, s) in ref.rows.items() if t.step - s > arg]
            sd = t.state_dict()
            sd["config"] = json.dumps({**t.config.to_dict(), "eviction": {"ttl_steps": arg}})
            t2 = EmbeddingTable.from_state_dict(sd)
            assert t2.evict() == len(stale)
            assert not t2.contains(np.array(stale, dtype=np.int64)).any()
            assert len(t2) == len(ref.rows) - len(stale)
        ref.check()


def test_growth_keeps_every_row_through_many_rehashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_mod, "_MIGRATE_PER_ID", 1)
    monkeypatch.setattr(table_mod, "_MIGRATE_MIN", 1)
    t = _table(initial_capacity=8)
    rng = np.random.default_rng(1)
    keys = rng.integers(-(2**62), 2**62, size=20_000, dtype=np.int64)
    seen_old_array = False
    for chunk in np.array_split(keys, 400):
        t.pull(chunk)
        seen_old_array |= t._so.shape[0] > 0
    assert seen_old_array, "the test should exercise lookups during an incremental rehash"
    assert len(t) == np.unique(keys).size
    assert t.contains(keys).all()
    # Rows created early still hold their initial value after all the moves.
    fresh = _table()
    np.testing.assert_array_equal(t.pull(keys[:100], train=False),
                                  fresh.pull(keys[:100], train=False))


def test_delete_with_heavy_collisions_keeps_probe_runs_intact() -> None:
    t = _table(initial_capacity=4096)
    keys = np.arange(3000, dtype=np.int64)
    t.pull(keys)
    rng = np.random.default_rng(2)
    alive = set(keys.tolist())
    for _ in range(30):
        victims = rng.choice(keys, size=80)
        t.remove(victims)
        alive -= set(victims.tolist())
        back = rng.choice(keys, size=50)
        t.pull(back)
        alive |= set(back.tolist())
        assert len(t) == len(alive)
    mask = t.contains(keys)
    assert set(keys[mask].tolist()) == alive


def test_negative_and_extreme_ids_are_ordinary_keys() -> None:
    t = _table()
    ids = np.array([0, -1, 2**63 - 1, -(2**63), 1], dtype=np.int64)
    t.pull(ids)
    assert len(t) == 5
    assert t.contains(ids).all()
    # uint64 ids are the same 64 bits.
    assert t.contains(ids.view(np.uint64)).all()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["pull", "push", "advance", "evict", "export"]),
                              ids_st), min_size=1, max_size=40),
       policy=st.sampled_from(["lru", "lfu"]))
def test_capacity_eviction_keeps_the_table_consistent(ops: list, policy: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Under automatic and explicit capacity eviction during slow rehashes, everything the
    table reports agrees: its length, its state dict, its reads, and its deltas replayed on
    a copy."""
    monkeypatch.setattr(table_mod, "_MIGRATE_PER_ID", 1)
    monkeypatch.setattr(table_mod, "_MIGRATE_MIN", 1)
    t = _table(max_rows=64, slack=0.1, policy=policy)
    replica = EmbeddingTable.from_state_dict(t.state_dict())
    for op, ids in ops:
        if op == "pull":
            t.pull(ids)
            assert len(t) <= int(64 * 1.1) + ids.shape[0]
        elif op == "push":
            t.push(ids, np.ones((ids.shape[0], DIM), np.float32))
        elif op == "advance":
            t.advance()
        elif op == "evict":
            t.evict()
            assert len(t) <= 64
        else:
            replica.apply_delta(t.export_delta())
            a, b = t.state_dict(), replica.state_dict()
            order_a, order_b = np.argsort(a["ids"]), np.argsort(b["ids"])
            np.testing.assert_array_equal(a["ids"][order_a], b["ids"][order_b])
            np.testing.assert_array_equal(a["values"][order_a], b["values"][order_b])
        sd = t.state_dict()
        assert sd["ids"].shape[0] == len(t) == np.unique(sd["ids"]).shape[0]
        assert t.contains(sd["ids"]).all()
        np.testing.assert_array_equal(t.pull(sd["ids"], train=False), sd["values"])
        stats = t.stats()
        assert stats["rows"] == len(t) and stats["load_factor"] <= 0.7 + 1e-9


def test_finish_rehash_and_stats() -> None:
    t = _table(initial_capacity=16)
    t.pull(np.arange(5000, dtype=np.int64))
    t.finish_rehash()
    s = t.stats()
    assert s["rows"] == 5000 and not s["rehashing"]
    assert 0.3 < s["load_factor"] <= 0.7
    assert s["memory_bytes"] == t.memory_bytes() > 5000 * t.lower_bound_bytes_per_row()
