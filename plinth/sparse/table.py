"""A dynamic embedding table: int64 feature id -> trainable row, no vocabulary, no collisions.

Usage::

    t = EmbeddingTable(TableConfig(name="c1", dim=16), initial_capacity=1024)
    rows = t.pull(ids)          # (n, dim) float32; creates rows for admitted ids
    t.push(ids, grads)          # optimizer step for every id that has a row
    t.advance()                 # next global step (and wall-clock time) for TTL / LRU
    t.evict()                   # apply TTL and max_rows now

Every operation is batch-shaped and runs in compiled kernels (``_kernels``) over numpy
arrays; Python only validates input and sizes buffers. The same interface is what a
parameter-server shard exposes, so a trainer cannot tell a local table from a remote one.

How it is built
---------------
*Index.* Open addressing with linear probing over an ``int64`` array of interleaved
(key, row) pairs, so a hit usually costs one cache line; the home slot is a multiply-shift
of a splitmix64 hash, which allows any capacity. Load is kept at or below 0.7 (at 0.85 probe
runs spill into a second line often enough to cost ~40% of uniform-lookup throughput on a
10M-row table) and deletions use backward shift, so no tombstones accumulate in the live
array. Kernels work on ids in a software pipeline: hash and prefetch the home slot of id i,
probe id i - 12 and prefetch its row, copy id i - 24, so the two cache misses of each
lookup overlap with those of other ids.

*Growth without pauses proportional to the table.* When an insert would push the load past
0.7, a new slot array 1.5x larger is allocated (calloc: pages are committed as they are
written) and the current one becomes the *old* array. Lookups probe new then old; inserts
go to the new one; and every training ``pull``/``push`` of n ids also migrates the next
``4n + 1024`` old slots (tombstoning them in the old array, whose probe runs therefore stay
valid). The old array holds at most 0.7 of its capacity and the new array reaches its own
limit only after 0.35 x old capacity more inserts, by when at least 4 x that many slots have
migrated, so migration always finishes first — if a caller's pattern ever defeats that
(e.g. one enormous batch), the remainder is migrated synchronously, still bounded by the
old array's size. Each operation's extra work is thus O(batch), never O(table).
``pull(train=False)`` never migrates (it is a pure read); ``finish_rehash()`` settles a
rehash in progress, e.g. before serving.

*Rows.* Values, optimizer state and a 24-byte metadata record (key, count, last-update step
as uint32, last-update time as float32 seconds since the table's first ``advance``, flags)
live in blocks of ``2**k`` rows (about 4 MiB of values, at most 65,536 rows) that are never
moved or copied: growing the arena appends a block; rows freed by eviction are reused first.
Kernels get the blocks' base addresses (see ``_pointers``). Large arrays are 2 MiB-aligned
with transparent huge pages advised, to keep random accesses from also missing the TLB.

*Memory per row* = values + optimizer state (the lower bound) + 24 bytes of metadata +
16 bytes / load factor of index (23-34 bytes at loads 0.47-0.7) + the used part of the last
block rounded to pages. For dim 16 with Adagrad that is 128 + 47 to 58 bytes (1.37x-1.46x
the bound; measured 1.39x at 10M rows); SGD's 64-byte bound gives ~1.8x (the metadata does
not shrink with the row).

Semantics
---------
- A row that does not exist reads as the initializer's value, ``init_std * N(0,1)`` drawn
  from a hash of (seed, id, element): reading it costs no memory, and a row created later
  starts from exactly that value (rounded to float16 for float16 storage).
- ``pull(ids)`` (train) counts each occurrence of an id without a row in the admission
  sketch and creates rows for admitted ids (``Admission``). ``pull(ids, train=False)`` never
  creates, counts or migrates anything: it is a pure read (safe to run concurrently with
  other reads).
- ``push(ids, grads)`` sums gradients of duplicate ids, applies the optimizer once per row,
  adds the number of occurrences to the row's count and stamps the current step and time.
  Ids without a row are ignored. ``push(ids, grads, unique=True)`` skips the summing for a
  caller whose ids are already distinct (same result, less work).
- ``advance(step, now)`` sets the clock the table stamps rows with; ``step`` defaults to the
  current step + 1 and ``now`` to ``time.time()``. Until the first call, the step is 0.
- Eviction (``Eviction``): ``evict()`` removes rows idle past a TTL and, with ``max_rows``,
  the least recently / frequently updated rows down to ``(1 - slack) * max_rows``. The cap
  is also enforced automatically, amortised: a training ``pull`` that would take the table
  past ``(1 + slack) * max_rows`` rows evicts down to ``(1 - slack) * max_rows`` (at least
  1/64 of the rows) before it creates more, so a training pull never leaves more than
  ``(1 + slack) * max_rows`` rows; a ``push`` (or ``apply_delta``) that finds the table
  above that evicts at its end. Rows stamped at the current step are chosen last, so rows
  pulled in this step wait for their gradients: when a pull has to evict, it first stamps
  the rows it has already read with the current step (their push would anyway). Only when
  a single batch holds more rows than the cap do rows of the current step go.
  With ``max_rows`` the index never grows past the slots that ``(1 + slack) * max_rows``
  rows need at the maximum load, so the table's footprint at the cap is bounded.
- Admission competition (``Admission.compete``, LFU caps): every capacity eviction records
  the count at which it cut; until the next one, an id without a row needs more sightings
  than that (besides ``min_count``), and a new row's count starts at its sketch estimate.
  Row counts do not decay, so this suits ids whose frequencies are stable over the table's
  life; the cut is not part of ``state_dict`` (a restored table starts from
  ``min_count`` until its first eviction).
- ``export_delta()`` returns the rows created or changed (pushed, or written by
  ``apply_delta``) since the previous ``export_delta`` and, separately, the ids evicted in
  that time that are not back. A table restored by ``from_state_dict`` starts with nothing
  to export.

Not thread-safe for concurrent mutation: serialize ``pull(train=True)``, ``push``,
``evict``, ``advance``, ``apply_delta`` and the exports on one table (kernels release the
GIL, so different tables can be driven from different threads in parallel).
"""

from __future__ import annotations

import ctypes
import json
import math
import sys
import time
from typing import Any

import numpy as np

from plinth.sparse import _kernels as K
from plinth.sparse.config import EvictionPolicy, StorageDType, TableConfig
from plinth.sparse.optimizers import (
    KIND_CODE,
    hyperparameters,
    initial_state,
    lower_bound_bytes_per_row,
    state_width,
)
from plinth.sparse.sketch import CountMinSketch

__all__ = ["EmbeddingTable", "TableInputError"]

_FORMAT_VERSION = 1
_MAX_LOAD = 0.7
_GROWTH = 1.5
# Incremental rehash: slots migrated per id of each training pull/push, plus a floor.
_MIGRATE_PER_ID = 4
_MIGRATE_MIN = 1024
_EMPTY_SLOTS = np.empty(0, dtype=np.int64)
_INIT_SALT = 0x6A09E667F3BCC909
_STATE_KEYS = ("ids", "values", "optimizer_state", "counts", "last_step", "last_time")


class TableInputError(ValueError, TypeError):
    """Malformed input to a table operation (wrong dtype, shape, or values); the message
    says what to fix. Subclasses both ValueError and TypeError so either ``except`` works."""


_HUGE_PAGE = 2 << 20
_HUGE_AFTER_BLOCKS = 8
_MADV_HUGEPAGE = 14


def _madvise_hugepages(addr: int, nbytes: int) -> None:
    """Ask Linux for transparent huge pages on a range (no-op elsewhere or on failure).

    Every lookup touches a random slot and a random row; with 4 KiB pages each of those also
    misses the TLB on large tables, while 2 MiB pages keep the page walks in cache. (torch's
    CPU allocator does the same for its large tensors, so the gather baseline has them.)"""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else False
        except OSError:
            _libc = False
    if _libc:
        _libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(nbytes), _MADV_HUGEPAGE)


_libc: Any = None


def _aligned_zeros(shape: tuple[int, ...], dtype: np.dtype | type,
                   huge: bool = False) -> np.ndarray:
    """Zeroed array starting on a 64-byte boundary, so a 64-byte row is one cache line rather
    than two (malloc gives 16-byte alignment); with ``huge`` and at least 2 MiB, on a 2 MiB
    boundary with transparent huge pages advised. Pages are committed on first write
    (calloc), so an unused tail costs address space, not memory. The view keeps the backing
    buffer alive."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    huge = huge and nbytes >= _HUGE_PAGE
    align = _HUGE_PAGE if huge else 64
    buf = np.zeros(nbytes + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    if huge:
        _madvise_hugepages(buf.ctypes.data + off, nbytes - nbytes % _HUGE_PAGE)
    return buf[off:off + nbytes].view(dt).reshape(shape)


def _new_slots(cap: int) -> np.ndarray:
    # All zero = all EMPTY: no initialising pass, pages are committed as slots fill.
    return _aligned_zeros((2 * cap,), np.int64, huge=True)


class EmbeddingTable:
    """Dynamic int64-id -> row table with in-table optimizer, admission and eviction.

    ``initial_capacity`` is a sizing hint (rows): the index starts large enough for it and
    the arena's block size is chosen from it; the table grows beyond it on demand.
    """

    def __init__(self, config: TableConfig, initial_capacity: int = 1024) -> None:
        if not isinstance(config, TableConfig):
            raise TableInputError(
                f"config must be a plinth.sparse.config.TableConfig, got {type(config).__name__}"
            )
        if not isinstance(initial_capacity, (int, np.integer)) or initial_capacity < 1:
            raise TableInputError(
                f"initial_capacity must be a positive integer, got {initial_capacity!r}"
            )
        initial_capacity = int(initial_capacity)
        self._cfg = config
        self._dim = config.dim
        self._half = config.storage_dtype is StorageDType.FLOAT16
        self._vdtype = np.dtype(np.uint16 if self._half else np.float32)
        self._row_vbytes = self._dim * self._vdtype.itemsize
        opt = config.optimizer
        self._sw = state_width(opt.kind, self._dim)
        self._kind = KIND_CODE[opt.kind]
        self._hp = hyperparameters(opt)
        self._state0 = initial_state(opt, self._dim)
        self._seed = np.uint64(config.seed) ^ np.uint64(_INIT_SALT)
        # Per-column initializer scale: the last ``zero_init_columns`` start at exactly 0.
        self._std = np.full(self._dim, config.init_std, dtype=np.float32)
        self._std[self._dim - config.zero_init_columns:] = 0.0
        # Blocks of about 4 MiB of values (65,536 rows at dim 16): large enough for huge
        # pages and a tiny block table; the untouched tail of the last block is not resident.
        rows_4mib = (4 << 20) // self._row_vbytes
        self._shift = int(min(16, max(10, rows_4mib.bit_length() - 1)))
        self._block_rows = 1 << self._shift

        cap = max(16, int(initial_capacity / _MAX_LOAD) + 1)
        self._sn = _new_slots(cap)
        self._so = _EMPTY_SLOTS
        self._hdr = np.zeros(K.HDR_LEN, dtype=np.int64)
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._bt_buf = np.zeros((16, 3), dtype=np.int64)
        self._free = np.empty(0, dtype=np.int64)

        adm = config.admission
        self._min_count = adm.min_count
        self._prob = float(adm.probability)
        self._compete = adm.compete
        if adm.min_count > 1 or adm.compete:
            # Competing newcomers are compared with row counts, which outgrow 8-bit counters.
            self._sketch: CountMinSketch | None = CountMinSketch(
                adm.sketch_width, adm.sketch_depth, 65535 if adm.compete else adm.min_count,
                seed=config.seed,
            )
            self._sketch_cells = self._sketch.cells
            self._sketch_seed = self._sketch.seed
        else:
            self._sketch = None
            self._sketch_cells = np.zeros((1, 1), dtype=np.uint8)
            self._sketch_seed = np.uint64(0)

        ev = config.eviction
        self._max_rows = ev.max_rows
        if ev.max_rows is not None:
            self._evict_above = int(ev.max_rows * (1.0 + ev.slack))
            self._evict_to = int(ev.max_rows * (1.0 - ev.slack))
            # The index never needs more slots than the cap's rows at the maximum load.
            self._max_slots = int(self._evict_above / _MAX_LOAD) + 1
        self._step = 0
        self._now: float | None = None
        self._t0: float | None = None
        self._evicted: list[np.ndarray] = []
        self._evicted_n = 0
        self._evicted_compacted = 0

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> TableConfig:
        return self._cfg

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def step(self) -> int:
        """The current global step (see ``advance``)."""
        return self._step

    @property
    def now(self) -> float | None:
        """The current wall-clock time in seconds, or None before the first ``advance``."""
        return self._now

    def __len__(self) -> int:
        return int(self._hdr[K.H_N_NEW] + self._hdr[K.H_N_OLD])

    def __repr__(self) -> str:
        return (f"EmbeddingTable(name={self._cfg.name!r}, dim={self._dim}, rows={len(self)}, "
                f"optimizer={self._cfg.optimizer.kind.value})")

    def memory_bytes(self) -> int:
        """Resident bytes of this table's arrays: index, block table, free list, sketch, and
        the row blocks — full blocks whole, the last block up to its highest row used
        (rounded up to the page size), since its untouched tail is reserved address space
        that the OS has not committed."""
        total = self._sn.nbytes + self._so.nbytes + self._bt_buf.nbytes + self._free.nbytes
        if self._sketch is not None:
            total += self._sketch.nbytes
        if self._blocks:
            *full, last = self._blocks
            total += sum(v.nbytes + s.nbytes + m.nbytes for v, s, m in full)
            used = int(self._hdr[K.H_NEXT_ROW]) - len(full) * self._block_rows
            page = _HUGE_PAGE if len(full) >= _HUGE_AFTER_BLOCKS else 4096
            for arr in last:
                per_row = arr.nbytes // self._block_rows
                total += min(arr.nbytes, -(-used * per_row // page) * page)
        return int(total)

    def stats(self) -> dict[str, Any]:
        """Sizes for monitoring: rows, index capacity and load factor, whether an
        incremental rehash is in progress, arena blocks and free rows, memory bytes."""
        cap = self._sn.shape[0] // 2
        return {
            "rows": len(self),
            "index_capacity": cap,
            "load_factor": len(self) / cap,
            "rehashing": bool(self._so.shape[0]),
            "blocks": len(self._blocks),
            "block_rows": self._block_rows,
            "free_rows": int(self._hdr[K.H_FREE]),
            "memory_bytes": self.memory_bytes(),
        }

    def lower_bound_bytes_per_row(self) -> int:
        """Values plus optimizer state of one row: the least any table must store."""
        return lower_bound_bytes_per_row(self._cfg.optimizer.kind, self._dim,
                                         self._vdtype.itemsize)

    # ------------------------------------------------------------------ input checks

    def _ids(self, ids: Any, what: str = "ids") -> np.ndarray:
        arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
        if arr.ndim != 1:
            raise TableInputError(
                f"table {self._cfg.name!r}: {what} must be a 1-D array of int64 feature ids, "
                f"got shape {arr.shape}; flatten it (ids.reshape(-1))"
            )
        if arr.dtype == np.int64:
            return np.ascontiguousarray(arr)
        if arr.dtype == np.uint64:
            # Hashes are often produced unsigned; the 64 bits are the id either way.
            return np.ascontiguousarray(arr).view(np.int64)
        if arr.dtype.kind in "iu":
            return arr.astype(np.int64)
        if arr.size == 0 and arr.dtype.kind == "f":
            return np.empty(0, dtype=np.int64)
        raise TableInputError(
            f"table {self._cfg.name!r}: {what} must be integer feature ids (int64), got dtype "
            f"{arr.dtype}; hash raw values with plinth.sparse.hashing first"
        )

    def _grads(self, grads: Any, n: int) -> np.ndarray:
        arr = grads if isinstance(grads, np.ndarray) else np.asarray(grads)
        if arr.ndim != 2 or arr.shape != (n, self._dim):
            raise TableInputError(
                f"table {self._cfg.name!r}: grads must have shape (len(ids), dim) = "
                f"({n}, {self._dim}), got {arr.shape}"
            )
        if arr.dtype.kind != "f":
            raise TableInputError(
                f"table {self._cfg.name!r}: grads must be floating point (float32), got "
                f"dtype {arr.dtype}"
            )
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not K.all_finite(arr):
            raise TableInputError(
                f"table {self._cfg.name!r}: grads contain NaN or infinity; nothing was "
                f"applied — check the loss and learning rate"
            )
        return arr

    # ------------------------------------------------------------------ growth

    def _bt(self) -> np.ndarray:
        return self._bt_buf[: len(self._blocks)]

    def _tnow(self) -> np.float32:
        if self._now is None or self._t0 is None:
            return np.float32(0.0)
        return np.float32(self._now - self._t0)

    def _add_block(self) -> None:
        b = self._block_rows
        # Huge pages from the 9th block on: a small table stays small (the last block's used
        # part is rounded up to whole 2 MiB pages, which only large tables can amortise).
        huge = len(self._blocks) >= _HUGE_AFTER_BLOCKS
        vals = _aligned_zeros((b, self._dim), self._vdtype, huge)
        state = _aligned_zeros((b, self._sw), np.float32, huge)
        meta = _aligned_zeros((b * K.META_BYTES,), np.uint8, huge)
        i = len(self._blocks)
        if i == self._bt_buf.shape[0]:
            buf = np.zeros((2 * i, 3), dtype=np.int64)
            buf[:i] = self._bt_buf
            self._bt_buf = buf
        self._bt_buf[i] = (vals.ctypes.data, state.ctypes.data, meta.ctypes.data)
        # The list keeps the blocks alive for as long as their addresses are in _bt_buf.
        self._blocks.append((vals, state, meta))

    def _reserve(self, n: int) -> None:
        """Make room for ``n`` more rows in the index and the arena."""
        total = len(self)
        cap_new = self._sn.shape[0] // 2
        if total + n > _MAX_LOAD * cap_new:
            self._finish_migration()
            need = int((total + n) / _MAX_LOAD) + 1
            new_cap = int(cap_new * _GROWTH)
            if self._max_rows is not None:
                new_cap = min(new_cap, self._max_slots)
            new_cap = max(new_cap, need)
            self._so = self._sn
            self._sn = _new_slots(new_cap)
            self._hdr[K.H_N_OLD] = self._hdr[K.H_N_NEW]
            self._hdr[K.H_N_NEW] = 0
            self._hdr[K.H_MIGRATE] = 0
        avail = (len(self._blocks) * self._block_rows - int(self._hdr[K.H_NEXT_ROW])
                 + int(self._hdr[K.H_FREE]))
        while avail < n:
            self._add_block()
            avail += self._block_rows

    def _room(self) -> int:
        """Rows that can be created now without growing the index or the arena."""
        index_room = int(_MAX_LOAD * (self._sn.shape[0] // 2)) - len(self)
        arena_room = (len(self._blocks) * self._block_rows - int(self._hdr[K.H_NEXT_ROW])
                      + int(self._hdr[K.H_FREE]))
        return max(0, min(index_room, arena_room))

    def finish_rehash(self) -> None:
        """Complete an incremental rehash in progress now (O(old slot array)). Training
        operations do this a little at a time; a table about to be served read-only (whose
        ``pull(train=False)`` never migrates) can call it once to drop the old slot array
        and its extra probe."""
        self._finish_migration()

    def _migrate_some(self, n: int) -> None:
        if self._so.shape[0] and K.migrate(self._sn, self._so, self._hdr,
                                               _MIGRATE_PER_ID * n + _MIGRATE_MIN):
            self._so = _EMPTY_SLOTS

    def _finish_migration(self) -> None:
        if self._so.shape[0]:
            K.migrate(self._sn, self._so, self._hdr, self._so.shape[0])
            self._so = _EMPTY_SLOTS

    def _reserve_free(self, n: int) -> None:
        need = int(self._hdr[K.H_FREE]) + n
        if need > self._free.shape[0]:
            buf = np.empty(max(need, 2 * self._free.shape[0], 1024), dtype=np.int64)
            buf[: self._free.shape[0]] = self._free
            self._free = buf

    # ------------------------------------------------------------------ pull / push

    def pull(self, ids: Any, train: bool = True) -> np.ndarray:
        """Rows for ``ids`` (int64, shape (n,), duplicates allowed) as float32 (n, dim).

        ``train=True`` counts ids without a row toward admission and creates rows for the
        admitted ones; ``train=False`` is a pure read."""
        ids = self._ids(ids)
        n = ids.shape[0]
        out = np.empty((n, self._dim), dtype=np.float32)
        if n == 0:
            return out
        if not train:
            K.pull_eval(ids, out, self._sn, self._so, self._bt(), self._shift, self._dim,
                        self._half, self._seed, self._std)
            return out
        capped = self._max_rows is not None
        if capped and len(self) > self._evict_above:
            self._evict(ttl=False)
        i = 0
        while True:
            room = self._room()
            if capped:
                room = min(room, max(0, self._evict_above - len(self)))
            i = int(K.pull_train(ids, out, i, room, self._sn, self._so, self._hdr,
                                 self._bt(), self._free, self._shift, self._dim, self._sw,
                                 self._half, self._seed, self._std, self._state0,
                                 self._admit_count(), self._sketch_cells, self._sketch_seed,
                                 self._prob, self._step, self._tnow(), self._compete))
            if i >= n:
                # Migrate after inserting, so a rehash started by this batch progresses now.
                self._migrate_some(n)
                return out
            if capped and len(self) >= self._evict_above:
                # At the cap: make room by evicting now rather than growing, so the table
                # never holds more than (1 + slack) * max_rows rows. The rows this pull has
                # already read are stamped with the current step first (as their push will
                # do), so they are chosen last.
                K.touch(ids[:i], self._sn, self._so, self._bt(), self._shift, self._step,
                        self._tnow())
                self._evict(ttl=False, at_least=1 + len(self) // 64)
                continue
            # Out of room for an admitted id: grow by up to half the table (or what is left
            # of the batch, or of the cap), so ids that are never admitted never cost memory.
            grow = min(n - i, max(1024, len(self) // 2))
            if capped:
                grow = max(1, min(grow, self._evict_above - len(self)))
            self._reserve(grow)

    def push(self, ids: Any, grads: Any, unique: bool = False) -> int:
        """Apply the optimizer to the rows of ``ids`` with ``grads`` (float32, (n, dim)).

        Gradients of duplicate ids are summed first; ids without a row are ignored. Returns
        the number of distinct rows updated. Input is checked before anything changes.

        ``unique=True`` is for callers whose ids are already distinct (``SparseEmbedding``
        deduplicates before its pull): it skips the batch-local dedup and the copy of the
        gradients, with bit-identical results. It is a promise, not checked: an id given
        twice then gets two optimizer steps, one per gradient, instead of one on their sum."""
        ids = self._ids(ids)
        grads = self._grads(grads, ids.shape[0])
        n = ids.shape[0]
        if n == 0:
            return 0
        self._migrate_some(n)
        kernel = K.push_unique if unique else K.push
        updated = kernel(ids, grads, self._sn, self._so, self._bt(), self._shift, self._dim,
                         self._sw, self._half, self._kind, self._hp, self._step, self._tnow())
        if self._max_rows is not None and len(self) > self._evict_above:
            self._evict(ttl=False)
        return int(updated)

    def contains(self, ids: Any) -> np.ndarray:
        """Boolean mask: which ids have a row."""
        ids = self._ids(ids)
        rows = np.empty(ids.shape[0], dtype=np.int64)
        K.lookup_rows(ids, self._sn, self._so, rows)
        return rows >= 0

    def remove(self, ids: Any) -> int:
        """Delete the rows of ``ids`` (absent ids are ignored); they are reported as evicted
        by the next ``export_delta``. Returns the number of rows removed."""
        ids = self._ids(ids)
        if ids.shape[0] == 0:
            return 0
        self._reserve_free(ids.shape[0])
        status = np.empty(ids.shape[0], dtype=np.uint8)
        removed = int(K.delete_keys(ids, self._sn, self._so, self._hdr, self._bt(),
                                    self._shift, self._free, status))
        self._note_evicted(ids[status == 1])
        return removed

    def set_lr_scale(self, scale: float) -> None:
        """Multiply the optimizer's learning rate (FTRL: ``alpha``) by ``scale`` for the
        following pushes (a trainer's warm-up); 1.0 restores the configured rate."""
        self._hp[0] = hyperparameters(self._cfg.optimizer)[0] * float(scale)

    # ------------------------------------------------------------------ clock / eviction

    def advance(self, step: int | None = None, now: float | None = None) -> None:
        """Set the global step (default: current + 1; must not go back; < 2**32) and the
        wall-clock time in seconds (default: ``time.time()``) used to stamp rows."""
        if step is None:
            step = self._step + 1
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool):
            raise TableInputError(f"advance(step=...) must be an integer, got {step!r}")
        step = int(step)
        if step < self._step:
            raise TableInputError(
                f"table {self._cfg.name!r}: step went backwards ({step} < current "
                f"{self._step}); pass the trainer's global step, which only grows"
            )
        if step >= 2**32:
            raise TableInputError(f"advance(step=...) must be < 2**32, got {step}")
        if now is None:
            now = time.time()
        if not isinstance(now, (int, float, np.floating, np.integer)) or not math.isfinite(now):
            raise TableInputError(f"advance(now=...) must be finite seconds, got {now!r}")
        now = float(now)
        if self._t0 is None:
            self._t0 = now
        self._step = step
        self._now = now

    def evict(self) -> int:
        """Remove rows past the TTL and, over ``max_rows``, the LRU/LFU rows down to
        ``(1 - slack) * max_rows``. Returns the number of rows removed."""
        return self._evict(ttl=True)

    def _admit_count(self) -> int:
        """Sightings an id needs for a row now: ``min_count``, and with ``compete`` more than
        the count at which the last capacity eviction cut."""
        if not self._compete:
            return self._min_count
        return max(self._min_count, min(int(self._hdr[K.H_FLOOR]) + 1, 65535))

    def _evict(self, ttl: bool, at_least: int = 0) -> int:
        ev = self._cfg.eviction
        bt = self._bt()
        marked = 0
        if ttl and (ev.ttl_steps is not None or ev.ttl_seconds is not None):
            marked += int(K.mark_ttl(self._hdr, bt, self._shift, self._step,
                                     ev.ttl_steps or 0, self._tnow(),
                                     float(ev.ttl_seconds or 0.0)))
        if self._max_rows is not None:
            remaining = len(self) - marked
            # Automatic calls come only above (1 + slack) * max_rows; an explicit evict()
            # enforces the cap itself. Either way, go down to (1 - slack) * max_rows.
            if not ttl or remaining > self._max_rows:
                over = max(remaining - self._evict_to, at_least)
                if over > 0:
                    marked += int(K.mark_capacity(self._hdr, bt, self._shift, over,
                                                  ev.policy is EvictionPolicy.LFU, self._step))
        if marked == 0:
            return 0
        self._reserve_free(marked)
        keys = np.empty(marked, dtype=np.int64)
        new = np.empty(marked, dtype=np.bool_)
        removed = int(K.remove_marked(self._sn, self._so, self._hdr, bt, self._shift,
                                      self._free, keys, new))
        self._note_evicted(keys[:removed][~new[:removed]])
        return removed

    def _note_evicted(self, keys: np.ndarray) -> None:
        if keys.shape[0] == 0:
            return
        self._evicted.append(keys)
        self._evicted_n += keys.shape[0]
        # Keep the remembered ids deduplicated once they outgrow twice their last unique size.
        if self._evicted_n > 2 * self._evicted_compacted + (1 << 20):
            u = np.unique(np.concatenate(self._evicted))
            self._evicted = [u]
            self._evicted_n = self._evicted_compacted = u.shape[0]

    # ------------------------------------------------------------------ export / restore

    def _gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        n = rows.shape[0]
        vals = np.empty((n, self._row_vbytes), dtype=np.uint8)
        state = np.empty((n, 4 * self._sw), dtype=np.uint8)
        meta = np.empty((n, K.META_BYTES), dtype=np.uint8)
        K.gather_rows(rows, self._bt(), self._shift, self._row_vbytes, self._sw, vals, state,
                      meta)
        m = meta.reshape(-1).view(K.META_DTYPE)
        values = vals.reshape(-1).view(np.float16 if self._half else np.float32)
        return {
            "ids": m["key"].copy(),
            "values": values.reshape(n, self._dim),
            "optimizer_state": state.reshape(-1).view(np.float32).reshape(n, self._sw),
            "counts": m["count"].copy(),
            "last_step": m["last_step"].copy(),
            "last_time": m["last_time"].copy(),
        }

    def _header(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "config": json.dumps(self._cfg.to_dict(), sort_keys=True),
            "step": self._step,
            "now": float("nan") if self._now is None else self._now,
            "time_origin": float("nan") if self._t0 is None else self._t0,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore this table exactly.

        Arrays (row order is the table's internal order): ``ids`` int64 (n,), ``values``
        (n, dim) float32 or float16 (the storage dtype), ``optimizer_state`` float32
        (n, state_width), ``counts`` uint32, ``last_step`` uint32, ``last_time`` float32
        (seconds since ``time_origin``), ``sketch`` (admission counters). Scalars:
        ``config`` (JSON), ``step``, ``now``, ``time_origin`` (NaN when unset),
        ``format_version``. Loadable with ``np.savez``/``np.load`` as is."""
        n = len(self)
        rows = np.empty(n, dtype=np.int64)
        got = K.collect_rows(self._hdr, self._bt(), self._shift, np.uint8(0), np.uint8(0), rows)
        assert got == n, (got, n)
        d: dict[str, Any] = self._header()
        d.update(self._gather(rows))
        d["sketch"] = (self._sketch.cells.copy() if self._sketch is not None
                       else np.zeros((0, 0), dtype=np.uint8))
        return d

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> EmbeddingTable:
        """Rebuild a table from ``state_dict()`` output (or its ``np.load`` of an ``.npz``).
        The restored table has no pending delta."""
        missing = [k for k in (*_STATE_KEYS, "config", "step") if k not in d]
        if missing:
            raise TableInputError(f"state dict lacks {missing}; pass the output of "
                                  f"EmbeddingTable.state_dict()")
        fv = int(np.asarray(d.get("format_version", _FORMAT_VERSION)))
        if fv != _FORMAT_VERSION:
            raise TableInputError(f"state dict format_version {fv} is not supported "
                                  f"(expected {_FORMAT_VERSION})")
        cfg = TableConfig.from_dict(json.loads(str(np.asarray(d["config"]))))
        n = int(np.asarray(d["ids"]).shape[0])
        t = cls(cfg, initial_capacity=max(n, 1024))
        t._upsert(t._check_rows(d, "state dict"), flags=K.F_LIVE)
        t._step = int(np.asarray(d["step"]))
        now = float(np.asarray(d.get("now", float("nan"))))
        t0 = float(np.asarray(d.get("time_origin", float("nan"))))
        t._now = None if math.isnan(now) else now
        t._t0 = None if math.isnan(t0) else t0
        sk = np.asarray(d.get("sketch", np.zeros((0, 0), np.uint8)))
        if t._sketch is not None and sk.size:
            if sk.shape != t._sketch.cells.shape or sk.dtype != t._sketch.cells.dtype:
                raise TableInputError(
                    f"state dict sketch has shape {sk.shape} {sk.dtype}, the config needs "
                    f"{t._sketch.cells.shape} {t._sketch.cells.dtype}"
                )
            t._sketch.cells[...] = sk
        return t

    def _check_rows(self, d: dict[str, Any], what: str) -> tuple[np.ndarray, ...]:
        """Validate the row arrays of a state dict or delta; return them as raw byte views
        (values, state, meta) ready for ``_kernels.upsert_rows``."""
        ids = self._ids(d["ids"], what=f"{what} ids")
        n = ids.shape[0]
        vdt = np.float16 if self._half else np.float32
        checks = {
            "values": ((n, self._dim), vdt),
            "optimizer_state": ((n, self._sw), np.float32),
            "counts": ((n,), np.uint32),
            "last_step": ((n,), np.uint32),
            "last_time": ((n,), np.float32),
        }
        arrays = {}
        for key, (shape, dt) in checks.items():
            arr = np.asarray(d[key])
            if arr.shape != shape:
                raise TableInputError(
                    f"table {self._cfg.name!r}: {what} {key} has shape {arr.shape}, expected "
                    f"{shape} (dim={self._dim}, optimizer={self._cfg.optimizer.kind.value}, "
                    f"{n} ids)"
                )
            if arr.dtype != dt:
                raise TableInputError(
                    f"table {self._cfg.name!r}: {what} {key} has dtype {arr.dtype}, expected "
                    f"{np.dtype(dt)} (storage_dtype={self._cfg.storage_dtype.value})"
                )
            arrays[key] = np.ascontiguousarray(arr)
        meta = np.zeros(n, dtype=K.META_DTYPE)
        meta["key"] = ids
        meta["count"] = arrays["counts"]
        meta["last_step"] = arrays["last_step"]
        meta["last_time"] = arrays["last_time"]
        return (arrays["values"].reshape(-1).view(np.uint8).reshape(n, self._row_vbytes),
                arrays["optimizer_state"].reshape(-1).view(np.uint8).reshape(n, 4 * self._sw),
                meta.view(np.uint8).reshape(n, K.META_BYTES))

    def _upsert(self, rows: tuple[np.ndarray, ...], flags: int, created_flags: int = 0) -> int:
        vals, state, meta = rows
        self._reserve(meta.shape[0])
        created = int(K.upsert_rows(self._sn, self._so, self._hdr, self._bt(), self._free,
                                    self._shift, self._row_vbytes, self._sw, vals, state, meta,
                                    np.uint8(flags), np.uint8(created_flags)))
        self._migrate_some(meta.shape[0])
        return created

    def export_delta(self) -> dict[str, Any]:
        """Rows created or changed since the previous ``export_delta`` (same arrays as
        ``state_dict``, without the sketch) plus ``evicted_ids``: ids removed since then and
        not present now. Resets the change tracking."""
        bt = self._bt()
        k = int(K.count_flag(self._hdr, bt, self._shift, np.uint8(K.F_DIRTY)))
        rows = np.empty(k, dtype=np.int64)
        K.collect_rows(self._hdr, bt, self._shift, np.uint8(K.F_DIRTY),
                       np.uint8(K.F_DIRTY | K.F_NEW), rows)
        d: dict[str, Any] = self._header()
        d.update(self._gather(rows))
        if self._evicted:
            ev = np.unique(np.concatenate(self._evicted))
            ev = ev[~self.contains(ev)]
        else:
            ev = np.empty(0, dtype=np.int64)
        d["evicted_ids"] = ev
        self._evicted = []
        self._evicted_n = self._evicted_compacted = 0
        return d

    def apply_delta(self, d: dict[str, Any]) -> None:
        """Apply an ``export_delta()`` of a table with the same dim, optimizer and storage:
        remove ``evicted_ids``, then create or overwrite the delta's rows. The delta is
        checked whole before anything changes. Applied rows count as changed for this
        table's own next ``export_delta``."""
        if "evicted_ids" not in d:
            raise TableInputError("delta lacks 'evicted_ids'; pass the output of "
                                  "EmbeddingTable.export_delta()")
        evicted = self._ids(d["evicted_ids"], what="delta evicted_ids")
        missing = [k for k in _STATE_KEYS if k not in d]
        if missing:
            raise TableInputError(f"delta lacks {missing}; pass the output of "
                                  f"EmbeddingTable.export_delta()")
        # Validate the rows before deleting anything, so a bad delta changes nothing.
        rows = self._check_rows(d, "delta")
        self.remove(evicted)
        self._upsert(rows, flags=K.F_LIVE | K.F_DIRTY, created_flags=K.F_NEW)
        step = int(np.asarray(d.get("step", self._step)))
        self._step = max(self._step, step)
