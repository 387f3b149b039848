"""Numeric feature normalisation learned from the data: fit once, apply everywhere.

A :class:`Normalizer` turns a table's numeric columns into the model's dense input
``(B, width)`` float32. Per column it holds a :class:`ColumnTransform`::

    raw x (null / NaN / inf = missing)
      -> log1p?   sign(x) * log(1 + |x|)           (heavy-tailed non-negative columns)
      -> z = (x - center) / scale                   (standardise)
      -> clip z to [-clip, clip]                     (extremes cannot saturate the model)
      -> missing rows get ``fill_z``                 (the mean, 0, unless ``fill`` was declared)
      [+ one extra column: 1.0 where missing]        (when the training data had missing values)

:func:`fit_normalizer` learns the transforms from the first ``max_rows`` rows of the
training files (one pass over those row groups, numeric columns and the label only) and
also returns the label's base rate, which the trainer uses for a calibrated start. The
schema's ``transform`` decides what is learned (:class:`~plinth.data.schema.NumericTransform`):
``auto`` chooses log1p when the column is non-negative and its skewness exceeds
:data:`LOG_SKEW`; ``log1p`` and ``standardize`` force the choice; ``none`` is the raw value.

The fitted normalizer is plain data (``to_dict``/``from_dict``): checkpoints and model
packages store it, so training, evaluation and serving (``ModelPackage.predict_records``)
apply exactly the same function to the same raw values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plinth.data.schema import NumericField, NumericTransform, Schema

__all__ = [
    "CLIP",
    "LOG_SKEW",
    "MISSING_INDICATOR_MIN",
    "ColumnTransform",
    "DataSample",
    "Normalizer",
    "as_float",
    "fit_normalizer",
    "read_sample",
]

CLIP = 5.0  # standard deviations; beyond this a value is an outlier, not more signal
LOG_SKEW = 2.0  # skewness above which a non-negative column is logged (a log-normal has ~6)
MISSING_INDICATOR_MIN = 0.001  # share of missing rows from which a column gets an indicator
_QUANTILES = (0.001, 0.999)  # mean/std are computed on values winsorised to these


@dataclass(frozen=True)
class ColumnTransform:
    """The learned transform of one numeric column (see the module docstring).

    ``kind``: the schema's declared transform (``auto``/``log1p``/``standardize``/``none``);
    ``missing_rate``: share of missing rows in the fitting sample (for the report).
    """

    name: str
    kind: str = NumericTransform.NONE.value
    log1p: bool = False
    center: float = 0.0
    scale: float = 1.0
    clip: float | None = None
    fill_z: float = 0.0
    missing_indicator: bool = False
    missing_rate: float = 0.0

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(z, indicator)`` for raw values ``x`` (float; NaN/inf = missing), float32."""
        x = np.asarray(x, dtype=np.float64)
        missing = ~np.isfinite(x)
        y = np.where(missing, 0.0, x)
        if self.log1p:
            y = np.sign(y) * np.log1p(np.abs(y))
        y = (y - self.center) / self.scale
        if self.clip is not None:
            y = np.clip(y, -self.clip, self.clip)
        y[missing] = self.fill_z
        ind = missing.astype(np.float32) if self.missing_indicator else None
        return y.astype(np.float32), ind

    def describe(self) -> str:
        """One line for reports, e.g. ``n1: log1p, then (x - 1.02) / 0.98, clip +-5``."""
        if self.kind == NumericTransform.NONE.value:
            return f"{self.name}: none (raw value, missing -> {self.fill_z:g})"
        s = f"{self.name}: {'log1p, then ' if self.log1p else ''}"
        s += f"(x - {self.center:.4g}) / {self.scale:.4g}"
        if self.clip is not None:
            s += f", clip +-{self.clip:g}"
        if self.missing_rate:
            s += f", missing {100 * self.missing_rate:.2f}% -> {self.fill_z:.3g}"
            s += " + indicator" if self.missing_indicator else ""
        return s + f" [{self.kind}]"


@dataclass(frozen=True)
class Normalizer:
    """Numeric columns -> the model's dense input; see the module docstring."""

    columns: tuple[ColumnTransform, ...] = ()

    @property
    def width(self) -> int:
        """Columns of the dense input: one per numeric field, plus one per indicator."""
        return len(self.columns) + sum(c.missing_indicator for c in self.columns)

    @property
    def output_names(self) -> list[str]:
        return [c.name for c in self.columns] + [
            f"{c.name}:missing" for c in self.columns if c.missing_indicator]

    def transform(self, raw: Sequence[np.ndarray]) -> np.ndarray:
        """Dense input ``(B, width)`` float32 from each column's raw values, in order:
        the transformed columns first, then the indicators."""
        n = len(raw[0]) if raw else 0
        out = np.empty((n, self.width), dtype=np.float32)
        k = len(self.columns)
        for j, (c, x) in enumerate(zip(self.columns, raw, strict=True)):
            z, ind = c.apply(x)
            out[:, j] = z
            if ind is not None:
                out[:, k] = ind
                k += 1
        return out

    @classmethod
    def declared(cls, schema: Schema) -> Normalizer:
        """What the schema alone says, without learning (for data read before a fit, and
        for packages written before learned transforms): ``log1p`` columns are logged,
        nothing is standardised, nulls become ``fill`` (0 when unset)."""
        return cls(tuple(
            ColumnTransform(name=f.name, kind=f.transform.value,
                            log1p=f.transform is NumericTransform.LOG1P,
                            fill_z=_declared_fill(f))
            for f in schema.numeric))

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        return cls(tuple(ColumnTransform(**c) for c in d.get("columns", [])))

    def describe(self) -> list[str]:
        return [c.describe() for c in self.columns]


def _declared_fill(f: NumericField) -> float:
    v = 0.0 if f.fill is None else f.fill
    return float(np.sign(v) * np.log1p(abs(v))) if f.transform is NumericTransform.LOG1P else v


@dataclass(frozen=True)
class DataSample:
    """The first rows of the training data: raw numeric columns and the labels."""

    numeric: dict[str, np.ndarray]
    labels: np.ndarray

    @property
    def base_rate(self) -> float | None:
        """Share of positive labels; None without rows."""
        return float(self.labels.mean()) if self.labels.size else None


def read_sample(files: Sequence[str | Path], schema: Schema, max_rows: int) -> DataSample:
    """Read up to ``max_rows`` rows (whole row groups, files in order) of the numeric
    columns and the label; nulls become NaN."""
    cols = schema.numeric_names + [schema.label]
    parts: list[pa.Table] = []
    have = 0
    for path in files:
        pf = pq.ParquetFile(path)
        for gi in range(pf.metadata.num_row_groups):
            if have >= max_rows:
                break
            t = pf.read_row_group(gi, columns=cols)
            parts.append(t)
            have += t.num_rows
    if not parts:
        return DataSample({n: np.empty(0) for n in schema.numeric_names}, np.empty(0))
    table = pa.concat_tables(parts).slice(0, max_rows)
    numeric = {n: as_float(table.column(n)) for n in schema.numeric_names}
    labels = np.asarray(table.column(schema.label).to_numpy(zero_copy_only=False),
                        dtype=np.float64)
    return DataSample(numeric, labels)


def as_float(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric Arrow column as float64 with NaN for nulls (what serving also sees)."""
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _skew(y: np.ndarray) -> float:
    sd = y.std()
    return float(((y - y.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def fit_column(f: NumericField, x: np.ndarray, clip: float = CLIP) -> ColumnTransform:
    """Learn ``f``'s transform from its raw sample ``x`` (NaN = missing)."""
    if f.transform is NumericTransform.NONE:
        return ColumnTransform(name=f.name, kind=f.transform.value,
                               fill_z=0.0 if f.fill is None else f.fill)
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    missing_rate = float(1.0 - finite.mean()) if x.size else 0.0
    v = x[finite]
    if f.transform is NumericTransform.AUTO:
        take_log = bool(v.size and v.min() >= 0 and _skew(v) > LOG_SKEW)
    else:
        take_log = f.transform is NumericTransform.LOG1P
    y = np.sign(v) * np.log1p(np.abs(v)) if take_log else v
    center, scale = 0.0, 1.0
    if y.size:
        lo, hi = np.quantile(y, _QUANTILES)
        w = np.clip(y, lo, hi)
        center = float(w.mean())
        sd = float(w.std())
        scale = sd if sd > 1e-12 and math.isfinite(sd) else 1.0
    fill_z = 0.0
    if f.fill is not None:
        fv = np.sign(f.fill) * np.log1p(abs(f.fill)) if take_log else f.fill
        fill_z = float(np.clip((fv - center) / scale, -clip, clip))
    return ColumnTransform(
        name=f.name, kind=f.transform.value, log1p=take_log, center=center, scale=scale,
        clip=clip, fill_z=fill_z, missing_rate=missing_rate,
        missing_indicator=f.fill is None and MISSING_INDICATOR_MIN <= missing_rate < 1.0,
    )


def fit_normalizer(files: Sequence[str | Path], schema: Schema, max_rows: int = 100_000,
                   clip: float = CLIP) -> tuple[Normalizer, DataSample]:
    """Learn every numeric column's transform from the first ``max_rows`` training rows;
    return it with the sample (whose ``base_rate`` gives the calibrated start)."""
    sample = read_sample(files, schema, max_rows)
    cols = tuple(fit_column(f, sample.numeric[f.name], clip) for f in schema.numeric)
    return Normalizer(cols), sample
