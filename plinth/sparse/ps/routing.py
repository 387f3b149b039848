"""Which shard owns a feature id, and splitting a batch of ids by shard.

An id's shard is ``slot_of(mix64(mix64(id) ^ SALT), num_shards)``: a stable function of
the id and the number of *shards* only — never of the number of workers — so every worker
routes an id to the same shard, and a checkpoint can be resharded by recomputing it for the
new shard count.

The routing hash must be independent of the tables' own index hash (``slot_of(mix64(id ^
_INDEX_SALT), capacity)``): a shard holds only the ids routed to it, and if the two hashes
agreed on their top bits, all of a shard's ids would fall into one part of its index and
probe runs would grow without bound (a 2-shard table took minutes to fill before this was
so). Hashing twice with another salt decorrelates them; a test checks it.
"""

from __future__ import annotations

import numba
import numpy as np

from plinth.sparse._hash import mix64, slot_of

__all__ = ["ROUTING_SALT", "ShardSplit", "shard_of", "split_by_shard"]

ROUTING_SALT = np.uint64(0xD1B54A32D192ED03)  # any odd constant; never change it (checkpoints)


@numba.njit(cache=True, inline="always")
def _shard(key: np.int64, n: np.int64) -> np.int64:
    return slot_of(mix64(mix64(np.uint64(key)) ^ ROUTING_SALT), n)


@numba.njit(cache=True, nogil=True)
def _shard_kernel(ids: np.ndarray, n: np.int64, out: np.ndarray) -> None:
    for i in range(ids.shape[0]):
        out[i] = _shard(ids[i], n)


@numba.njit(cache=True, nogil=True)
def _split_kernel(ids: np.ndarray, n: np.int64, order: np.ndarray, bounds: np.ndarray) -> None:
    # Counting sort by shard: one hashing pass, one placing pass; stable within a shard.
    shard = np.empty(ids.shape[0], dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    for i in range(ids.shape[0]):
        s = _shard(ids[i], n)
        shard[i] = s
        counts[s] += 1
    bounds[0] = 0
    for s in range(n):
        bounds[s + 1] = bounds[s] + counts[s]
    fill = bounds[:n].copy()
    for i in range(ids.shape[0]):
        s = shard[i]
        order[fill[s]] = i
        fill[s] += 1


def shard_of(ids: np.ndarray, num_shards: int) -> np.ndarray:
    """The owning shard (int64 in ``[0, num_shards)``) of each id."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    out = np.empty(ids.shape[0], dtype=np.int64)
    _shard_kernel(ids, np.int64(num_shards), out)
    return out


class ShardSplit:
    """A batch of ids grouped by shard.

    ``order`` is a permutation of ``range(len(ids))`` listing shard 0's positions, then
    shard 1's ...; ``bounds[s]:bounds[s+1]`` is shard ``s``'s slice of it. ``ids_for(s)`` are
    the ids to send to shard ``s``; rows coming back are put in place with
    ``out[order[bounds[s]:bounds[s+1]]] = rows_s``.
    """

    __slots__ = ("bounds", "ids", "order")

    def __init__(self, ids: np.ndarray, order: np.ndarray, bounds: np.ndarray) -> None:
        self.ids, self.order, self.bounds = ids, order, bounds

    def positions(self, shard: int) -> np.ndarray:
        return self.order[self.bounds[shard]:self.bounds[shard + 1]]

    def ids_for(self, shard: int) -> np.ndarray:
        return self.ids[self.positions(shard)]


def split_by_shard(ids: np.ndarray, num_shards: int) -> ShardSplit:
    """Group ``ids`` (int64) by owning shard in O(n) (see :class:`ShardSplit`)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    order = np.empty(ids.shape[0], dtype=np.int64)
    bounds = np.empty(num_shards + 1, dtype=np.int64)
    _split_kernel(ids, np.int64(num_shards), order, bounds)
    return ShardSplit(ids, order, bounds)
