"""Parquet -> :class:`~plinth.sparse.jagged.Batch` reader with background prefetch and resume.

``ParquetReader(paths, schema, batch_size)`` reads the schema's columns from Parquet files
(paths, directories or globs; files in sorted order), row group by row group, and yields
batches of exactly ``batch_size`` rows (the last one of an epoch may be smaller unless
``drop_last``). A background thread reads and converts ahead (``prefetch`` batches):
Arrow's reading and the compiled hashing release the GIL, so conversion overlaps training.

Conversion per batch: categorical columns are hashed with their field salt into a KJT
(nulls -> empty slots; list columns -> one id per element); numeric columns are filled
and transformed (:mod:`plinth.data.normalize`) into a float32 ``(B, width)`` matrix; the
label becomes float32.

Position and resume: the reader counts samples *delivered to the consumer* in the current
epoch. ``state()`` is ``{"epoch": e, "sample": s}``; ``iter_epoch(epoch, start=s)`` skips
whole row groups from the file metadata, then rows inside one, so resuming costs no
reading of what was skipped. With ``shuffle_row_groups`` the order of row groups is a
permutation seeded by (seed, epoch), so a resumed epoch sees the same order.
"""

from __future__ import annotations

import glob
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plinth.data.normalize import Normalizer, as_float
from plinth.data.schema import Schema
from plinth.sparse.jagged import Batch, BatchError, KeyedJaggedTensor

__all__ = ["DataError", "ParquetReader", "expand_paths", "table_to_batch"]


class DataError(ValueError):
    """Input data cannot be read as the schema says; the message names file/column and fix."""


def expand_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files named by paths, directories (their ``*.parquet``) or globs; sorted, unique."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[Path] = []
    for item in items:
        s = str(item)
        if any(ch in s for ch in "*?["):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise DataError(f"no files match {s!r}; check the data path")
            out.extend(Path(m) for m in matches)
        elif Path(s).is_dir() and (dataset := _dataset_files(Path(s))) is not None:
            out.extend(dataset)
        elif Path(s).is_dir():
            matches = sorted(Path(s).rglob("*.parquet"))
            if not matches:
                raise DataError(f"directory {s} holds no .parquet files")
            out.extend(matches)
        elif Path(s).is_file():
            out.append(Path(s))
        else:
            raise DataError(f"data path {s} does not exist")
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def _dataset_files(directory: Path) -> list[Path] | None:
    """A built dataset's files (its manifest's list), or None for a plain directory.

    A dataset whose build did not finish (``_BUILDING`` and no manifest) is refused rather
    than read in part.
    """
    from plinth.data import manifest as mf

    try:
        m = mf.read_manifest(directory)
    except ValueError as e:
        raise DataError(str(e)) from None
    if m is not None:
        return mf.dataset_files(directory, m)
    if (directory / mf.BUILDING_MARKER).exists():
        raise DataError(f"dataset {directory} has no manifest: its build did not finish; "
                        "run `plinth data build` again")
    return None


def table_to_batch(table: pa.Table, schema: Schema, first_sample: int = 0,
                   normalizer: Normalizer | None = None) -> Batch:
    """Convert ``table`` (holding at least the schema's columns) into a :class:`Batch`.

    Numeric columns go through ``normalizer`` (learned transforms, see
    :mod:`plinth.data.normalize`); without one, only what the schema declares applies."""
    # Imported here: numba's compiler costs ~200 MB, which sample builds (that import this
    # module for DataError and expand_paths) should not pay.
    from plinth.sparse.hashing import hash_values

    if schema.derived:  # raw records (serving) may lack bucketized/crossed columns
        from plinth.data.transforms import apply_derived

        table = apply_derived(table, schema, only_missing=True)
    n = table.num_rows
    values, lengths = [], []
    for f in schema.categorical:
        col = table.column(f.name)
        if pa.types.is_null(col.type):  # every value missing (e.g. a request without it)
            values.append(np.empty(0, dtype=np.int64))
            lengths.append(np.zeros(n, dtype=np.int64))
            continue
        if f.multi:
            arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
                raise DataError(
                    f"column {f.name!r} is {arr.type}, but the schema marks it multi: true; "
                    "use a list column or drop `multi`"
                )
            if arr.null_count:
                arr = pc.fill_null(arr, pa.scalar([], type=arr.type))
            offs = np.asarray(arr.offsets)
            flat = arr.values.slice(int(offs[0]), int(offs[-1] - offs[0]))
            if flat.null_count:
                raise DataError(f"column {f.name!r} has null ids inside lists; drop them")
            ln = np.diff(offs).astype(np.int64)
            ids = hash_values(flat, f.hash_salt)
        else:
            if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                raise DataError(
                    f"column {f.name!r} holds lists; mark it `multi: true` in the schema"
                )
            if col.null_count:
                valid = col.is_valid()
                ln = np.asarray(valid.to_numpy(zero_copy_only=False), dtype=np.int64)
                col = col.filter(valid)
            else:
                ln = np.ones(n, dtype=np.int64)
            if not (pa.types.is_integer(col.type) or pa.types.is_string(col.type)
                    or pa.types.is_large_string(col.type) or pa.types.is_binary(col.type)
                    or pa.types.is_large_binary(col.type)):
                raise DataError(
                    f"categorical column {f.name!r} is {col.type}; it must hold integers or "
                    "strings (list it under `numeric` if it is a number)"
                )
            ids = hash_values(col, f.hash_salt)
        values.append(ids)
        lengths.append(ln)
    if schema.categorical:
        kjt = KeyedJaggedTensor(
            schema.categorical_names, np.concatenate(values), lengths=np.concatenate(lengths),
            stride=n,
        )
    else:
        kjt = KeyedJaggedTensor.empty([], n)
    dense = numeric_input(table, schema, normalizer)
    label_col = table.column(schema.label)
    if label_col.null_count:
        raise DataError(f"label column {schema.label!r} has nulls; drop those rows")
    labels = np.asarray(label_col.to_numpy(zero_copy_only=False), dtype=np.float32)
    sample_ids = np.arange(first_sample, first_sample + n, dtype=np.int64)
    return Batch(kjt, dense, labels, sample_ids, _weights(table, schema))


def _weights(table: pa.Table, schema: Schema) -> np.ndarray | None:
    """The schema's sample-weight column as float32 (nulls -> 1.0, as builds write them);
    None without one, or when the table lacks it (records to score carry no weight)."""
    if schema.weight is None or schema.weight not in table.column_names:
        return None
    col = table.column(schema.weight)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
            or pa.types.is_null(col.type)):
        raise DataError(f"weight column {schema.weight!r} is {col.type}; it must be numeric")
    w = np.array(pc.fill_null(col.cast(pa.float32()), 1.0).to_numpy(zero_copy_only=False),
                   dtype=np.float32)
    if n_bad := int(np.count_nonzero(~np.isfinite(w) | (w < 0))):
        raise DataError(f"weight column {schema.weight!r} has {n_bad} negative or non-finite "
                        "values; weights must be finite and >= 0")
    return w


def numeric_input(table: pa.Table, schema: Schema,
                  normalizer: Normalizer | None = None) -> np.ndarray:
    """The dense model input ``(B, normalizer.width)`` float32 from the numeric columns."""
    raw = []
    for f in schema.numeric:
        col = table.column(f.name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                or pa.types.is_boolean(col.type) or pa.types.is_null(col.type)):
            raise DataError(f"numeric column {f.name!r} is {col.type}; it must hold numbers")
        raw.append(as_float(col))
    return (normalizer or Normalizer.declared(schema)).transform(raw) if raw else np.empty(
        (table.num_rows, 0), dtype=np.float32)


@dataclass(frozen=True)
class _RowGroup:
    """Rows ``offset .. offset + rows`` of row group ``index`` of file ``file`` (the
    whole group unless a worker's share cut it, see :mod:`plinth.train.data_split`)."""

    file: int
    index: int
    rows: int
    offset: int = 0


class ParquetReader:
    """Batches from Parquet files; see the module docstring for order, prefetch and resume."""

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        schema: Schema,
        batch_size: int,
        *,
        prefetch: int = 4,
        drop_last: bool = False,
        shuffle_row_groups: bool = False,
        seed: int = 0,
        validate: bool = True,
        normalizer: Normalizer | None = None,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.files = expand_paths(paths)
        self.schema = schema
        self.batch_size = batch_size
        self.prefetch = max(1, prefetch)
        self.drop_last = drop_last
        self.shuffle_row_groups = shuffle_row_groups
        self.seed = seed
        self.validate = validate
        self.normalizer = normalizer
        self._groups: list[_RowGroup] = []
        for fi, path in enumerate(self.files):
            try:
                meta = pq.ParquetFile(path).metadata
                arrow_schema = pq.read_schema(path)
            except (OSError, pa.ArrowException) as e:
                raise DataError(f"cannot read Parquet file {path}: {e}") from None
            missing = [c for c in schema.columns if c not in arrow_schema.names]
            if missing:
                raise DataError(
                    f"{path} lacks columns {missing} named by the schema; "
                    f"it has {arrow_schema.names}"
                )
            for gi in range(meta.num_row_groups):
                rows = meta.row_group(gi).num_rows
                if rows:
                    self._groups.append(_RowGroup(fi, gi, rows))
        self.num_rows = sum(g.rows for g in self._groups)
        self.epoch = 0
        self.position = 0  # samples of self.epoch delivered to the consumer

    def __len__(self) -> int:
        """Batches per full epoch."""
        full, rest = divmod(self.num_rows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def state(self) -> dict[str, int]:
        """Resumable position: ``{"epoch", "sample"}`` (samples delivered this epoch)."""
        return {"epoch": self.epoch, "sample": self.position}

    def _order(self, epoch: int) -> list[_RowGroup]:
        if not self.shuffle_row_groups:
            return self._groups
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self._groups))
        return [self._groups[i] for i in perm]

    def _tables(self, epoch: int, start: int) -> Iterator[pa.Table]:
        files: dict[int, pq.ParquetFile] = {}
        skip = start
        for g in self._order(epoch):
            if skip >= g.rows:
                skip -= g.rows
                continue
            pf = files.get(g.file)
            if pf is None:
                pf = files[g.file] = pq.ParquetFile(self.files[g.file])
            t = pf.read_row_group(g.index, columns=self.schema.columns)
            if g.offset or t.num_rows != g.rows:
                t = t.slice(g.offset, g.rows)
            if skip:
                t = t.slice(skip)
                skip = 0
            yield t

    def _produce(self, epoch: int, start: int, out: queue.Queue, stop: threading.Event) -> None:
        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            pending: list[pa.Table] = []
            have = 0
            pos = start
            for t in self._tables(epoch, start):
                pending.append(t)
                have += t.num_rows
                while have >= self.batch_size:
                    joined = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
                    head = joined.slice(0, self.batch_size)
                    rest = joined.slice(self.batch_size)
                    pending = [rest] if rest.num_rows else []
                    have = rest.num_rows
                    if not put(self._convert(head, pos)):
                        return
                    pos += self.batch_size
            if have and not self.drop_last:
                joined = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
                if not put(self._convert(joined, pos)):
                    return
            put(None)
        except Exception as e:  # noqa: BLE001 — forwarded to the consumer, raised there
            put(e)

    def _convert(self, table: pa.Table, pos: int) -> Batch:
        b = table_to_batch(table, self.schema, pos, self.normalizer)
        if self.validate:
            try:
                b.validate()
            except BatchError as e:
                raise DataError(f"batch at sample {pos} of epoch {self.epoch}: {e}") from None
        return b

    def iter_epoch(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """Yield the batches of ``epoch`` from sample ``start``; updates :meth:`state`.

        ``position`` advances when a batch is handed over, so a checkpoint taken after
        training on it resumes with the next batch.
        """
        if not 0 <= start <= self.num_rows:
            raise DataError(f"resume position {start} is outside the {self.num_rows} rows")
        self.epoch, self.position = epoch, start
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        th = threading.Thread(
            target=self._produce, args=(epoch, start, q, stop), name="plinth-reader", daemon=True
        )
        th.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                self.position += item.size
                yield item
        finally:
            stop.set()
            th.join()
