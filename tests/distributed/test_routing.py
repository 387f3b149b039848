"""Routing: an id's shard is a stable function of the id and the shard count only."""

import numpy as np
import pytest

from plinth.sparse.ps.routing import shard_of, split_by_shard


def test_shard_of_is_pinned_and_independent_of_anything_but_the_shard_count() -> None:
    ids = np.array([0, 1, 2, 3, -1, 2**62, 123456789], dtype=np.int64)
    got = shard_of(ids, 4)
    # Pinned: a change would silently misroute every checkpointed row.
    assert got.tolist() == shard_of(ids.copy(), 4).tolist()
    assert got.tolist() == [3, 0, 2, 2, 3, 2, 1]
    assert set(shard_of(np.arange(10_000), 3).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_split_groups_every_id_once_by_its_shard(n: int) -> None:
    ids = np.random.default_rng(n).integers(-(2**63), 2**63 - 1, 5000, dtype=np.int64)
    split = split_by_shard(ids, n)
    assert sorted(split.order.tolist()) == list(range(len(ids)))
    owner = shard_of(ids, n)
    for s in range(n):
        assert (owner[split.positions(s)] == s).all()
        assert split.ids_for(s).tolist() == ids[owner == s].tolist()  # stable within a shard
    # Balanced: a hash, not ranges.
    counts = np.diff(split.bounds)
    assert counts.min() > 0.8 * len(ids) / n


def test_bad_shard_count_is_refused() -> None:
    with pytest.raises(ValueError, match="num_shards"):
        shard_of(np.arange(3), 0)


def test_a_shards_ids_spread_over_its_tables_index() -> None:
    """Routing and the table's index must not share hash bits: a shard holds only its
    own ids, and they must still cover its index evenly (else probe runs explode)."""
    from plinth.sparse._kernels import _home

    ids = np.random.default_rng(0).integers(1, 2**62, 200_000, dtype=np.int64)
    for n in (2, 4):
        mine = ids[shard_of(ids, n) == 0]
        slots = np.array([_home(k, 1 << 16) for k in mine[:20_000]])
        counts = np.bincount(slots * n >> 16, minlength=n)  # by top bits of the slot
        assert counts.min() > 0.8 * counts.mean(), (n, counts)
