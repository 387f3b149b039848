"""Splitting the training data across workers: by file and row group, deterministically.

:func:`assign_row_groups` is pure: the row groups of all files (in file order), a seed and
the number of workers in, one list of row-group indices per worker out. The groups are
visited in an order permuted by the seed and each goes to the worker with the fewest rows
so far (ties: the lowest rank), so shares differ by at most one row group and the split is
the same on every worker — each computes all shares and needs no coordination.

Data with few row groups (fewer than :data:`PIECES_PER_WORKER` per worker) is split
finer first: each row group into equal row ranges, so that every worker gets rows — a
worker then reads a whole row group to take its range, which only small data pays.

Synchronous data parallelism needs every worker to take the same number of steps:
:func:`steps_per_epoch` is the smallest share's batch count; a worker's batches beyond it
(at most about one row group) are skipped in that epoch.

:class:`WorkerReader` is a :class:`~plinth.data.reader.ParquetReader` over one worker's
share: positions and resume (``iter_epoch(epoch, start)``) count samples of that share.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from plinth.data.reader import DataError, ParquetReader

__all__ = ["PIECES_PER_WORKER", "WorkerReader", "assign_row_groups", "split_pieces",
           "steps_per_epoch"]

#: Fewer row groups than this per worker are cut into row ranges (balance and no empty share).
PIECES_PER_WORKER = 4


def assign_row_groups(rows: Sequence[int], world_size: int, seed: int) -> list[list[int]]:
    """Indices into ``rows`` (row counts of the row groups) for each of ``world_size``
    workers; each list in visiting order."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(rows))
    heap = [(0, rank) for rank in range(world_size)]
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for g in order:
        total, rank = heapq.heappop(heap)
        shares[rank].append(int(g))
        heapq.heappush(heap, (total + int(rows[g]), rank))
    return shares


def steps_per_epoch(rows: Sequence[int], shares: list[list[int]], batch_size: int) -> int:
    """Steps every worker takes per epoch: the smallest share's number of batches."""
    return min(-(-sum(int(rows[g]) for g in share) // batch_size) for share in shares)


def split_pieces(rows: Sequence[int], pieces: int) -> list[tuple[int, int, int]]:
    """``(group index, offset, rows)`` pieces of the row groups with ``rows`` rows: each
    group cut into equal ranges, so that there are at least ``pieces`` in all (when the
    rows allow); every row is in exactly one piece."""
    if not rows:
        return []
    per = max(1, -(-pieces // len(rows)))
    out = []
    for g, n in enumerate(rows):
        bounds = np.linspace(0, int(n), min(per, int(n)) + 1).round().astype(int)
        out += [(g, int(lo), int(hi - lo)) for lo, hi in itertools.pairwise(bounds) if hi > lo]
    return out


class WorkerReader(ParquetReader):
    """A reader over worker ``rank``'s share of ``paths`` (see the module docstring)."""

    def __init__(self, paths: str | Path | Sequence[str | Path], schema: Any, batch_size: int,
                 *, rank: int, world_size: int, seed: int = 0, **kw: Any) -> None:
        super().__init__(paths, schema, batch_size, seed=seed, **kw)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        want = PIECES_PER_WORKER * world_size
        if self._groups and len(self._groups) < want:
            groups = self._groups
            self._groups = [
                replace(groups[g], offset=groups[g].offset + off, rows=n)
                for g, off, n in split_pieces([g.rows for g in groups], want)
            ]
        counts = [g.rows for g in self._groups]
        self.shares = assign_row_groups(counts, world_size, seed)
        if counts and min(len(s) for s in self.shares) == 0:
            raise DataError(
                f"the training data has {sum(counts)} rows, too few to give each of "
                f"{world_size} workers a share: use fewer workers or more data")
        self.steps_per_epoch = steps_per_epoch(counts, self.shares, batch_size) if counts else 0
        self._all_groups = self._groups
        self._groups = [self._all_groups[i] for i in self.shares[rank]]
        self.num_rows = sum(g.rows for g in self._groups)
