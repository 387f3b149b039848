"""Splitting the training data across workers: by file and row group, deterministically.

:func:`assign_row_groups` is pure: the row groups of all files (in file order), a seed and
the number of workers in, one list of row-group indices per worker out. The groups are
visited in an order permuted by the seed and each goes to the worker with the fewest rows
so far (ties: the lowest rank), so shares differ by at most one row group and the split is
the same on every worker — each computes all shares and needs no coordination.

Synchronous data parallelism needs every worker to take the same number of steps:
:func:`steps_per_epoch` is the smallest share's batch count; a worker's batches beyond it
(at most about one row group) are skipped in that epoch.

:class:`WorkerReader` is a :class:`~plinth.data.reader.ParquetReader` over one worker's
share: positions and resume (``iter_epoch(epoch, start)``) count samples of that share.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plinth.data.reader import ParquetReader

__all__ = ["WorkerReader", "assign_row_groups", "steps_per_epoch"]


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


class WorkerReader(ParquetReader):
    """A reader over worker ``rank``'s share of ``paths`` (see the module docstring)."""

    def __init__(self, paths: str | Path | Sequence[str | Path], schema: Any, batch_size: int,
                 *, rank: int, world_size: int, seed: int = 0, **kw: Any) -> None:
        super().__init__(paths, schema, batch_size, seed=seed, **kw)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        counts = [g.rows for g in self._groups]
        self.shares = assign_row_groups(counts, world_size, seed)
        self.steps_per_epoch = steps_per_epoch(counts, self.shares, batch_size) if counts else 0
        self._all_groups = self._groups
        self._groups = [self._all_groups[i] for i in self.shares[rank]]
        self.num_rows = sum(g.rows for g in self._groups)
