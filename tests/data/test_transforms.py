"""Derived fields as Arrow functions: bucket edges, crosses, learned boundaries."""

from __future__ import annotations

import math

import pyarrow as pa

from plinth.data.schema import Schema
from plinth.data.transforms import apply_derived, bucketize, cross, learn_boundaries


def test_bucket_edges_and_nulls():
    out = bucketize(pa.array([-1.0, 1.0, 5.0, 10.0, 100.0, None, math.nan]), [1.0, 10.0])
    assert out.to_pylist() == [0, 1, 1, 2, 2, None, None]
    assert out.type == pa.int32()


def test_cross_is_one_id_per_pair_order_sensitive_and_null_if_any_is():
    a = pa.array([1, 1, 2, 2, None])
    b = pa.array(["x", "y", "x", "x", "x"])
    ids = cross([a, b], ["a", "b"]).to_pylist()
    assert ids[2] == ids[3]
    assert len({ids[0], ids[1], ids[2]}) == 3
    assert ids[4] is None
    assert cross([b, a], ["b", "a"]).to_pylist()[0] != ids[0]


def test_learned_boundaries_split_into_equal_mass_buckets():
    values = pa.array([float(i) for i in range(1000)] + [None])
    bounds = learn_boundaries(values, 4)
    assert len(bounds) == 3
    counts = [0] * 4
    for b in bucketize(values, bounds).to_pylist():
        if b is not None:
            counts[b] += 1
    assert counts == [250] * 4
    assert learn_boundaries(pa.array([1.0] * 10), 8) == (1.0,)  # duplicates collapse


def test_apply_derived_fills_only_what_raw_records_lack():
    schema = Schema.from_dict({
        "label": "y",
        "categorical": ["u", {"name": "p_b", "bucketize": "p", "boundaries": [10]},
                        {"name": "u_x_c", "cross": ["u", "c"]}],
        "numeric": ["p"],
    })
    raw = pa.table({"u": [1, 2], "c": ["a", "b"], "p": [5.0, 50.0],
                    "p_b": pa.nulls(2), "y": [0, 1]})
    out = apply_derived(raw, schema, only_missing=True)
    assert out.column("p_b").to_pylist() == [0, 1]
    assert out.column("u_x_c").null_count == 0
    kept = apply_derived(raw.drop_columns(["c"]), schema, only_missing=True)
    assert "u_x_c" not in kept.column_names  # a source is missing: left to the caller
