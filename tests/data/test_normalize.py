"""Learned numeric transforms: what auto chooses, what each declared transform does, and
that a fitted normalizer round-trips as plain data."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plinth.data.normalize import CLIP, Normalizer, fit_column, fit_normalizer
from plinth.data.schema import NumericField, NumericTransform, Schema


def _counts(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    return np.floor(np.exp(1.5 + 1.2 * rng.standard_normal(n)))


def test_auto_logs_heavy_tailed_counts_then_standardises():
    x = _counts()
    t = fit_column(NumericField("n"), x)
    assert t.log1p and t.kind == "auto" and not t.missing_indicator
    z, ind = t.apply(x)
    assert ind is None and z.dtype == np.float32
    assert abs(float(z.mean())) < 0.05 and 0.9 < float(z.std()) < 1.1


def test_auto_keeps_symmetric_or_negative_columns_linear():
    rng = np.random.default_rng(1)
    assert not fit_column(NumericField("g"), rng.standard_normal(5000)).log1p
    assert not fit_column(NumericField("u"), rng.uniform(0, 1, 5000)).log1p


def test_extremes_are_clipped_and_missing_values_filled_with_an_indicator():
    x = _counts()
    x[::10] = np.nan  # 10% missing
    t = fit_column(NumericField("n"), x)
    assert t.missing_indicator and t.missing_rate == pytest.approx(0.1)
    z, ind = t.apply(np.array([1e30, -1e30, np.inf, np.nan, 3.0]))
    assert z[0] == CLIP and z[1] == -CLIP  # an absurd value cannot saturate the model
    assert z[2] == z[3] == t.fill_z == 0.0  # inf and NaN are missing: the mean
    np.testing.assert_array_equal(ind, [0, 0, 1, 1, 0])


def test_declared_transforms_are_honoured():
    x = _counts()
    none = fit_column(NumericField("n", transform=NumericTransform.NONE, fill=-1.0), x)
    z, ind = none.apply(np.array([5000.0, np.nan]))
    np.testing.assert_array_equal(z, [5000.0, -1.0])  # raw, nulls -> fill
    assert ind is None
    assert fit_column(NumericField("n", transform=NumericTransform.LOG1P), -x).log1p
    assert not fit_column(NumericField("n", transform=NumericTransform.STANDARDIZE), x).log1p
    filled = fit_column(NumericField("n", fill=0.0), np.where(np.arange(x.size) % 4, x, np.nan))
    assert not filled.missing_indicator  # a declared fill replaces the indicator
    assert filled.apply(np.array([np.nan]))[0][0] == filled.apply(np.array([0.0]))[0][0]


def test_fit_from_parquet_gives_base_rate_and_round_trips(tmp_path):
    x = _counts(4000)
    x[::7] = np.nan
    y = (np.arange(4000) % 25 == 0).astype(np.int8)
    pq.write_table(pa.table({"n": x, "m": np.arange(4000.0) - 2000, "y": y}),
                   tmp_path / "a.parquet", row_group_size=500)
    schema = Schema.from_dict({"label": "y", "numeric": ["n", "m"]})
    norm, sample = fit_normalizer([tmp_path / "a.parquet"], schema, max_rows=2000)
    assert sample.labels.size == 2000 and sample.base_rate == pytest.approx(0.04)
    assert norm.width == 3 and norm.output_names == ["n", "m", "n:missing"]
    again = Normalizer.from_dict(norm.to_dict())
    assert again == norm
    raw = [np.array([np.nan, 1e9]), np.array([0.0, 1e9])]
    np.testing.assert_array_equal(again.transform(raw), norm.transform(raw))
    assert "log1p" in norm.describe()[0] and "indicator" in norm.describe()[0]
