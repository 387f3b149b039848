"""One parameter-server shard: its part of every table and the operations on it. No I/O
but the checkpoint and delta files it is told to write or read.

The shard owns the ids that :func:`~plinth.sparse.ps.routing.shard_of` maps to its index,
for every table the workers declare in their ``hello``. It is a thin layer over
:class:`~plinth.sparse.table.EmbeddingTable` — admission, the in-table optimizers, eviction
and delta tracking are the table's — plus what only a shard needs:

* checkpoints: ``save(dir)`` writes ``dir/shard-IIII-of-NNNN.pkl`` ({table: state_dict}),
  fsynced; ``restore(dir)`` reads a complete checkpoint written by *any* number of shards
  and keeps the rows it owns now, with their optimizer state, counts and timestamps
  (resharding). Admission sketches cannot be split by id, so a resharded shard starts from
  the element-wise sum of the old shards' sketches (a count-min sketch of the union:
  counts of ids without a row can only be over-estimated). With the same number of shards
  the restore is exact;
* request accounting for ``stats`` (rows, bytes, requests/s since the previous ``stats``).

Steps: every push carries the worker's global step; the shard advances its tables to the
largest step seen, so TTL and LRU stamps follow the training clock as in one process.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from plinth.sparse.config import TableConfig
from plinth.sparse.ps.protocol import ShardError
from plinth.sparse.ps.routing import shard_of
from plinth.sparse.table import EmbeddingTable

__all__ = ["Shard", "merge_table_states", "shard_file", "shard_files"]

_SHARD_FILE = re.compile(r"^shard-(\d{4})-of-(\d{4})\.pkl$")


def shard_file(index: int, num_shards: int) -> str:
    return f"shard-{index:04d}-of-{num_shards:04d}.pkl"


def shard_files(directory: Path) -> list[Path]:
    """The shard files of a checkpoint directory, in shard order; raises
    :class:`ShardError` unless exactly one complete set (``0..N-1 of N``) is there."""
    found: dict[int, int] = {}
    for p in directory.iterdir():
        m = _SHARD_FILE.match(p.name)
        if m:
            found[int(m.group(1))] = int(m.group(2))
    counts = set(found.values())
    if len(counts) != 1 or sorted(found) != list(range(next(iter(counts)))):
        raise ShardError(f"checkpoint {directory} does not hold one complete set of shard "
                         f"files (found {sorted(found.items())}); use another checkpoint")
    n = counts.pop()
    return [directory / shard_file(i, n) for i in range(n)]


_ROW_KEYS = ("ids", "values", "optimizer_state", "counts", "last_step", "last_time")


def merge_table_states(parts: list[dict[str, Any]], keep: np.ndarray | None = None,
                       ) -> dict[str, Any]:
    """One ``state_dict`` from the states of one table on several shards (same config):
    rows concatenated (only ``keep`` — a boolean mask over the concatenated rows — when
    given), step the largest, time origin the earliest (row times re-based to it), sketch
    the saturating sum. Pure."""
    if not parts:
        raise ValueError("merge_table_states needs at least one part")
    origins = [float(np.asarray(p["time_origin"])) for p in parts]
    known = [t for t in origins if not math.isnan(t)]
    t0 = min(known) if known else float("nan")
    out: dict[str, Any] = {k: parts[0][k] for k in ("format_version", "config")}
    out["step"] = max(int(np.asarray(p["step"])) for p in parts)
    nows = [float(np.asarray(p["now"])) for p in parts if not math.isnan(float(np.asarray(p["now"])))]
    out["now"] = max(nows) if nows else float("nan")
    out["time_origin"] = t0
    for k in _ROW_KEYS:
        arrays = []
        for p, origin in zip(parts, origins, strict=True):
            a = np.asarray(p[k])
            if k == "last_time" and not math.isnan(origin) and origin != t0:
                a = (a + np.float32(origin - t0)).astype(np.float32)
            arrays.append(a)
        out[k] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        if keep is not None:
            out[k] = out[k][keep]
    sketches = [np.asarray(p["sketch"]) for p in parts if np.asarray(p["sketch"]).size]
    if sketches:
        dt = sketches[0].dtype
        total = np.sum([s.astype(np.int64) for s in sketches], axis=0)
        out["sketch"] = np.minimum(total, np.iinfo(dt).max).astype(dt)
    else:
        out["sketch"] = np.asarray(parts[0]["sketch"])
    return out


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class Shard:
    """Shard ``index`` of ``num_shards``: tables by name, created by the first ``hello``."""

    def __init__(self, index: int, num_shards: int) -> None:
        if not 0 <= index < num_shards:
            raise ValueError(f"shard index {index} is outside 0..{num_shards - 1}")
        self.index, self.num_shards = index, num_shards
        self.tables: dict[str, EmbeddingTable] = {}
        self.requests = 0
        self._stats_at = time.monotonic()
        self._stats_requests = 0

    # ---- tables -------------------------------------------------------------------------
    def hello(self, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Create the declared tables that do not exist yet; refuse a table whose config
        differs from the one this shard already holds."""
        for name, raw in configs.items():
            cfg = TableConfig.from_dict(raw)
            have = self.tables.get(name)
            if have is None:
                self.tables[name] = EmbeddingTable(cfg, initial_capacity=_initial_rows(cfg))
            elif have.config != cfg:
                raise ShardError(f"table {name!r} exists on shard {self.index} with another "
                                 f"config; every worker must run the same training config")
        return {"shard": self.index, "num_shards": self.num_shards, "rows": self.rows()}

    def table(self, name: str) -> EmbeddingTable:
        t = self.tables.get(name)
        if t is None:
            raise ShardError(f"shard {self.index} has no table {name!r} (it has "
                             f"{sorted(self.tables)}); send hello with its config first")
        return t

    def pull(self, name: str, ids: np.ndarray, train: bool) -> np.ndarray:
        self.requests += 1
        return self.table(name).pull(ids, train=train)

    def push(self, name: str, ids: np.ndarray, grads: np.ndarray, step: int,
             unique: bool = False, lr_scale: float = 1.0) -> int:
        """Apply row gradients (``unique``: ids are distinct, no summing needed) at the
        table's learning rate times ``lr_scale`` (the worker's warm-up factor)."""
        self.requests += 1
        t = self.table(name)
        if step > t.step:
            t.advance(step=step)
        t.set_lr_scale(lr_scale)
        return t.push(ids, grads, unique=unique)

    def evict(self) -> int:
        return sum(t.evict() for t in self.tables.values())

    def rows(self) -> dict[str, int]:
        return {n: len(t) for n, t in self.tables.items()}

    def stats(self) -> dict[str, Any]:
        """Rows and bytes per table, and requests/s since the previous ``stats`` call."""
        now = time.monotonic()
        dt = now - self._stats_at
        rate = (self.requests - self._stats_requests) / dt if dt > 0 else 0.0
        self._stats_at, self._stats_requests = now, self.requests
        return {
            "shard": self.index,
            "rows": self.rows(),
            "bytes": {n: int(t.memory_bytes()) for n, t in self.tables.items()},
            "requests": self.requests,
            "requests_per_s": rate,
        }

    # ---- checkpoints and deltas ---------------------------------------------------------
    def save(self, directory: str | Path) -> str:
        """Write this shard's tables to ``directory/shard-IIII-of-NNNN.pkl`` (fsynced)."""
        d = Path(directory)
        if not d.is_dir():
            raise ShardError(f"checkpoint directory {d} does not exist on shard {self.index}")
        name = shard_file(self.index, self.num_shards)
        states = {n: t.state_dict() for n, t in self.tables.items()}
        _fsync_write(d / name, pickle.dumps(states, protocol=5))
        return name

    def restore(self, directory: str | Path) -> dict[str, int]:
        """Replace the tables by this shard's part of the checkpoint in ``directory``,
        whatever number of shards wrote it (see the module docstring)."""
        files = shard_files(Path(directory))
        if len(files) == self.num_shards:
            with open(files[self.index], "rb") as f:
                states = pickle.load(f)
        else:
            states = self._reshard(files)
        self.tables = {n: EmbeddingTable.from_state_dict(sd) for n, sd in states.items()}
        return self.rows()

    def _reshard(self, files: list[Path]) -> dict[str, dict[str, Any]]:
        # One old file in memory at a time: keep only this shard's rows of each.
        parts: dict[str, list[dict[str, Any]]] = {}
        for path in files:
            with open(path, "rb") as f:
                states = pickle.load(f)
            for name, sd in states.items():
                mine = shard_of(np.asarray(sd["ids"]), self.num_shards) == self.index
                parts.setdefault(name, []).append(merge_table_states([sd], keep=mine))
            del states
        return {name: merge_table_states(ps) for name, ps in parts.items()}

    def export_delta(self, directory: str | Path) -> dict[str, int]:
        """Write each table's rows changed since the previous delta (and ids evicted) to
        ``directory/tables/<table>.shard-IIII.npz``; return rows per table."""
        d = Path(directory) / "tables"
        if not d.is_dir():
            raise ShardError(f"delta directory {d} does not exist on shard {self.index}")
        out = {}
        for name, t in self.tables.items():
            delta = t.export_delta()
            with open(d / f"{name}.shard-{self.index:04d}.npz", "wb") as f:
                np.savez(f, ids=delta["ids"], values=delta["values"],
                         evicted_ids=delta["evicted_ids"])
                f.flush()
                os.fsync(f.fileno())
            out[name] = int(delta["ids"].shape[0])
        return out


def _initial_rows(cfg: TableConfig) -> int:
    ev = cfg.eviction
    return 1024 if ev.max_rows is None else max(1024, int(ev.max_rows * (1.0 + ev.slack)))
