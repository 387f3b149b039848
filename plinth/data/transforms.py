"""The schema's derived fields as functions over Arrow tables (no Polars, no I/O).

A build applies them to each day's joined samples; serving can apply them to raw records.
They take and return ``pyarrow.Table`` so that Polars on one machine and Ray Data
(``map_batches(..., batch_format="pyarrow")``) on a cluster run the same code.

* ``bucketize``: ``price -> price_b``: the index of the bucket a value falls in, with
  ``boundaries`` ``b0 < b1 < ... < bk``: ``v < b0 -> 0``, ``b(i-1) <= v < bi -> i``,
  ``v >= bk -> k + 1`` (int32); null or NaN stays null.
* ``cross``: ``(user_id, i_category) -> user_x_cat``: one int64 id per combination of
  values, from the hashed ids of each source (so ints and strings both work); any null
  source gives null.
* ``learn_boundaries``: equal-mass quantile boundaries of a numeric column, deduplicated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plinth.data.schema import CategoricalField, Schema
from plinth.sparse.hashing import hash_values, mix64

__all__ = ["apply_derived", "bucketize", "cross", "learn_boundaries"]


def _valid_mask(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def bucketize(values: pa.ChunkedArray | pa.Array, boundaries: Sequence[float]) -> pa.Array:
    """Bucket index (int32) of each value; see the module docstring for the edges."""
    x = np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = _valid_mask(values) & np.isfinite(x)
    idx = np.searchsorted(np.asarray(boundaries, dtype=np.float64), x, side="right")
    return pa.array(idx.astype(np.int32), mask=~valid)


def cross(columns: Sequence[pa.ChunkedArray | pa.Array], names: Sequence[str]) -> pa.Array:
    """One int64 id per combination of the columns' values (order matters); null if any is."""
    n = len(columns[0])
    acc = np.zeros(n, dtype=np.uint64)
    valid = np.ones(n, dtype=bool)
    for col, name in zip(columns, names, strict=True):
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        valid &= _valid_mask(col)
        ids = hash_values(col.fill_null(0) if pa.types.is_integer(col.type) else col, name)
        # Rotate-xor then mix: order-sensitive, and mix64 is a bijection, so two sources
        # give distinct crosses for distinct (a, b) unless the 64-bit hashes collide.
        rotated = (acc << np.uint64(17)) | (acc >> np.uint64(47))
        acc = np.asarray(mix64(rotated)).view(np.uint64) ^ np.asarray(ids).view(np.uint64)
    return pa.array(np.asarray(mix64(acc)).view(np.int64), mask=~valid)


def learn_boundaries(values: pa.ChunkedArray | pa.Array, quantiles: int) -> tuple[float, ...]:
    """Up to ``quantiles - 1`` distinct inner boundaries splitting the finite values into
    equal-mass buckets; ``()`` when there are no finite values."""
    x = np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    x = x[_valid_mask(values) & np.isfinite(x)]
    if x.size == 0:
        return ()
    qs = np.quantile(x, np.arange(1, quantiles) / quantiles, method="linear")
    return tuple(float(v) for v in np.unique(qs))


def _derive(table: pa.Table, f: CategoricalField) -> pa.Array:
    if f.bucketize is not None:
        if f.boundaries is None:
            raise ValueError(f"field {f.name!r}: quantile boundaries were never learned")
        return bucketize(table.column(f.bucketize), f.boundaries)
    assert f.cross is not None
    return cross([table.column(c) for c in f.cross], f.cross)


def apply_derived(table: pa.Table, schema: Schema, *, only_missing: bool = False) -> pa.Table:
    """``table`` with the schema's derived columns appended (or replaced).

    ``only_missing`` (raw records at serving time) derives only columns that are absent or
    all-null and whose sources are all present, and leaves the others as they are.
    """
    for f in schema.derived:
        if only_missing:
            present = f.name in table.column_names and not pa.types.is_null(
                table.column(f.name).type)
            if present or not all(c in table.column_names for c in f.sources):
                continue
        col = _derive(table, f)
        if f.name in table.column_names:
            table = table.set_column(table.column_names.index(f.name), f.name, col)
        else:
            table = table.append_column(f.name, col)
    return table
