"""Count-min sketch with conservative update: occurrence counts of ids that have no row yet.

Admission with ``min_count > 1`` must remember how often an id was seen before it earns a
row, without spending per-id memory on the long tail of ids that never will. A count-min
sketch (Cormode & Muthukrishnan 2005) keeps ``depth`` rows of ``width`` small saturating
counters; an id increments one counter per row (chosen by independent hashes) and its count
is estimated as the minimum of its counters — never below the true count, above it only
when other ids collide in every row. *Conservative update* (Estan & Varghese 2002) raises
only the counters that equal the current minimum, which tightens the overestimate.

Counters are uint8 when ``min_count <= 255`` (the sketch only needs to know "reached
``min_count``") and uint16 otherwise, and saturate instead of wrapping.
"""

from __future__ import annotations

import numba
import numpy as np

from plinth.sparse._numba_cache import drop_stale_numba_cache

drop_stale_numba_cache(__file__)  # before importing compiled code from siblings

from plinth.sparse._hash import mix64, slot_of

__all__ = ["CountMinSketch", "sketch_add", "sketch_estimate"]


@numba.njit(cache=True, nogil=True)
def sketch_add(cells: np.ndarray, seed: np.uint64, key: np.int64) -> np.int64:
    """Record one occurrence of ``key``; return its estimated count including this one."""
    depth, width = cells.shape
    est = np.int64(1) << 40
    h0 = mix64(np.uint64(key) ^ seed)
    h = h0
    for d in range(depth):
        # A fresh mix per row gives independent-looking columns from one 64-bit hash.
        h = mix64(h + np.uint64(d + 1))
        v = np.int64(cells[d, slot_of(h, width)])
        est = min(est, v)
    new = est + 1
    maxv = np.int64(255) if cells.itemsize == 1 else np.int64(65535)
    new = min(new, maxv)
    h = h0
    for d in range(depth):
        h = mix64(h + np.uint64(d + 1))
        c = slot_of(h, width)
        if np.int64(cells[d, c]) < new:
            cells[d, c] = new
    return new


@numba.njit(cache=True, nogil=True)
def sketch_estimate(cells: np.ndarray, seed: np.uint64, key: np.int64) -> np.int64:
    """Estimated count of ``key`` (never below its true count, saturating)."""
    depth, width = cells.shape
    est = np.int64(1) << 40
    h = mix64(np.uint64(key) ^ seed)
    for d in range(depth):
        h = mix64(h + np.uint64(d + 1))
        v = np.int64(cells[d, slot_of(h, width)])
        est = min(est, v)
    return est


@numba.njit(cache=True, nogil=True)
def _add_many(cells: np.ndarray, seed: np.uint64, keys: np.ndarray, out: np.ndarray) -> None:
    for i in range(keys.shape[0]):
        out[i] = sketch_add(cells, seed, keys[i])


@numba.njit(cache=True, nogil=True)
def _estimate_many(cells: np.ndarray, seed: np.uint64, keys: np.ndarray, out: np.ndarray) -> None:
    for i in range(keys.shape[0]):
        out[i] = sketch_estimate(cells, seed, keys[i])


class CountMinSketch:
    """A ``depth`` x ``width`` count-min sketch for counts up to ``max_count``."""

    def __init__(self, width: int, depth: int, max_count: int, seed: int = 0) -> None:
        dtype = np.uint8 if max_count <= 255 else np.uint16
        self.cells = np.zeros((depth, width), dtype=dtype)
        self.seed = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5EED5EED5EED5EED)

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Record each key in order; return the estimate after each (int64)."""
        out = np.empty(keys.shape[0], dtype=np.int64)
        _add_many(self.cells, self.seed, np.ascontiguousarray(keys, dtype=np.int64), out)
        return out

    def estimate(self, keys: np.ndarray) -> np.ndarray:
        """Estimated counts (int64)."""
        out = np.empty(keys.shape[0], dtype=np.int64)
        _estimate_many(self.cells, self.seed, np.ascontiguousarray(keys, dtype=np.int64), out)
        return out

    @property
    def nbytes(self) -> int:
        return int(self.cells.nbytes)
