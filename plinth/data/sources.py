"""Raw inputs of a build: find their files, check them, fingerprint them, scan them.

``open_input(spec)`` checks every file of an input before anything is written — readable
Parquet, the standard columns present (after the spec's ``columns`` mapping), ids that
are integers or strings, ``event`` a string, ``ts`` a timestamp or an ISO-8601 string
that parses, the same type in every file — and refuses with a :class:`DataError` naming
the file and the column. It returns a :class:`RawInput`: per file its size, content hash
(sha256) and first/last timestamp, and ``scan()``, a Polars lazy frame with standard
column names and ``ts`` as naive UTC microseconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from plinth.data.reader import DataError, expand_paths
from plinth.data.spec import INPUT_KEYS, InputSpec

__all__ = ["InputFile", "RawInput", "open_input"]

_ID_COLUMNS = ("request_id", "user_id", "item_id")
TS_DTYPE = pl.Datetime("us")


@dataclass(frozen=True)
class InputFile:
    """One file of an input; ``first``/``last`` bound its ``ts`` (None when it is empty)."""

    path: Path
    size: int
    sha256: str
    first: dt.datetime | None
    last: dt.datetime | None

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256,
                "first": self.first.isoformat() if self.first else None,
                "last": self.last.isoformat() if self.last else None}

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Whether any of its timestamps may lie in ``[start, end)``."""
        return self.first is not None and self.last is not None and (
            self.first < end and self.last >= start)


@dataclass(frozen=True)
class RawInput:
    """A checked input: its spec, its files and the columns (standard names) it has."""

    spec: InputSpec
    files: tuple[InputFile, ...]
    columns: tuple[str, ...]
    ts_is_string: bool

    @property
    def name(self) -> str:
        return self.spec.name

    def scan(self, columns: Sequence[str] | None = None) -> pl.LazyFrame:
        """All files as one lazy frame, standard names, ``ts`` naive UTC (us)."""
        frames = [_scan_file(f.path, self.spec, self.ts_is_string, columns) for f in self.files]
        return pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _ts_expr(ts_is_string: bool, arrow_type: pa.DataType | None = None) -> pl.Expr:
    c = pl.col("ts")
    if ts_is_string:
        c = c.str.to_datetime(time_unit="us", time_zone="UTC", strict=True)
    elif arrow_type is not None and pa.types.is_date(arrow_type):
        return c.cast(TS_DTYPE)
    elif arrow_type is not None and getattr(arrow_type, "tz", None):
        c = c.dt.convert_time_zone("UTC")
    return c.dt.replace_time_zone(None).dt.cast_time_unit("us")


def _scan_file(path: Path, spec: InputSpec, ts_is_string: bool,
               columns: Sequence[str] | None) -> pl.LazyFrame:
    rename = {actual: std for std, actual in spec.columns.items()}
    lf = pl.scan_parquet(path)
    if rename:
        lf = lf.rename(rename, strict=False)
    if columns is not None:
        lf = lf.select(list(dict.fromkeys([*columns, "ts"])))
    arrow_type = pq.read_schema(path).field(spec.columns.get("ts", "ts")).type
    return lf.with_columns(_ts_expr(ts_is_string, arrow_type).alias("ts"))


def _type_kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def _check_columns(path: Path, spec: InputSpec, arrow: pa.Schema,
                   required: Sequence[str]) -> dict[str, str]:
    """Standard column name -> type kind, after refusing what cannot be built from."""
    to_std = {actual: std for std, actual in spec.columns.items()}
    kinds = {to_std.get(f.name, f.name): _type_kind(f.type) for f in arrow}
    missing = [spec.columns.get(c, c) for c in required if c not in kinds]
    if missing:
        raise DataError(
            f"{path}: {spec.name} lacks columns {missing}; it has {arrow.names} "
            f"(map other names with `columns:` under spec.{spec.name})"
        )
    for c in _ID_COLUMNS:
        if c in kinds and kinds[c] not in ("integer", "string", "null"):
            raise DataError(f"{path}: column {spec.columns.get(c, c)!r} is {kinds[c]}; "
                            "ids must be integers or strings")
    if "event" in kinds and kinds["event"] != "string":
        raise DataError(f"{path}: column {spec.columns.get('event', 'event')!r} is "
                        f"{kinds['event']}; it must hold event names (strings)")
    if kinds["ts"] not in ("timestamp", "string"):
        raise DataError(
            f"{path}: column {spec.columns.get('ts', 'ts')!r} is {kinds['ts']}; it must be a "
            "timestamp or an ISO-8601 string (convert epoch numbers to timestamps)"
        )
    return kinds


def _first_unparsable(path: Path, column: str) -> str | None:
    col = pl.col(column)
    bad = (pl.scan_parquet(path).select(col)
           .filter(col.is_not_null()
                   & col.str.to_datetime(time_unit="us", time_zone="UTC", strict=False).is_null())
           .head(1).collect())
    return None if bad.is_empty() else str(bad.item())


def _ts_bounds(path: Path, spec: InputSpec, ts_is_string: bool
               ) -> tuple[dt.datetime | None, dt.datetime | None]:
    b = (_scan_file(path, spec, ts_is_string, ["ts"])
         .select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"),
                 pl.col("ts").null_count().alias("nulls")).collect())
    if b["nulls"][0]:
        raise DataError(f"{path}: column {spec.columns.get('ts', 'ts')!r} is null in "
                        f"{b['nulls'][0]} rows; every row needs a timestamp")
    return b["lo"][0], b["hi"][0]


def open_input(spec: InputSpec, required: Sequence[str] | None = None) -> RawInput:
    """Check and fingerprint an input's files; see the module docstring."""
    required = tuple(required if required is not None else INPUT_KEYS[spec.name])
    try:
        paths = expand_paths(spec.path)
    except DataError as e:
        raise DataError(f"spec.{spec.name}: {e}") from None
    first_kinds: dict[str, str] | None = None
    first_path: Path | None = None
    files = []
    ts_is_string = False
    for path in paths:
        try:
            arrow = pq.read_schema(path)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        kinds = _check_columns(path, spec, arrow, required)
        if first_kinds is None:
            first_kinds, first_path = kinds, path
            ts_is_string = kinds["ts"] == "string"
        for c, k in kinds.items():
            other = first_kinds.get(c)
            if other is not None and "null" not in (k, other) and other != k:
                raise DataError(f"{path}: column {spec.columns.get(c, c)!r} is {k}, but it is "
                                f"{other} in {first_path}; make the files agree")
        if ts_is_string:
            bad = _first_unparsable(path, spec.columns.get("ts", "ts"))
            if bad is not None:
                raise DataError(f"{path}: column {spec.columns.get('ts', 'ts')!r} holds "
                                f"{bad!r}, not a timestamp; write ISO-8601 like "
                                "2026-11-01T12:30:00Z")
        lo, hi = _ts_bounds(path, spec, ts_is_string)
        files.append(InputFile(path, path.stat().st_size, _sha256(path), lo, hi))
    assert first_kinds is not None
    return RawInput(spec, tuple(files), tuple(first_kinds), ts_is_string)
