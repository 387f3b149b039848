"""The raw-log generator's planted truth is exactly what the build produces."""

from __future__ import annotations

import polars as pl

from plinth.data import manifest as mf
from plinth.data.build import build
from plinth.data.rawlogs import RawLogSpec, generate_raw_logs
from plinth.data.spec import load_spec


def test_the_build_reproduces_the_planted_truth(tmp_path):
    counts = generate_raw_logs(RawLogSpec(impressions=8_000, users=600, items=200,
                                          user_snapshots=2_000, item_snapshots=800,
                                          base_ctr=0.2, seed=3), tmp_path)
    events = pl.read_parquet(tmp_path / "events" / "**" / "*.parquet")
    assert events.is_duplicated().any()  # duplicates are planted ...
    logged_late = pl.read_parquet(tmp_path / "events" / "**" / "*.parquet",
                                  hive_partitioning=True)
    assert (logged_late["ts"].dt.date() < logged_late["date"]).any()  # ... and late events

    spec = load_spec(tmp_path / "spec.yaml")
    result = build(spec)
    assert result.rows_total == counts["impressions"]
    m = mf.read_manifest(spec.output)
    out = pl.read_parquet(mf.dataset_files(spec.output, m))
    truth = pl.read_parquet(tmp_path / "truth.parquet")
    joined = out.join(truth, on=["request_id", "item_id"], suffix="_truth", validate="1:1")
    assert joined.height == out.height == truth.height
    for col in ("click", "conversion", "u_segment", "u_activity", "i_category", "i_price"):
        assert (joined[col] == joined[f"{col}_truth"]).all(), col
    assert 0 < m["label_rates"]["click"] < 0.5
    assert m["label_rates"]["conversion"] > 0


def test_the_same_spec_gives_the_same_bytes(tmp_path):
    spec = RawLogSpec(impressions=2_000, users=100, items=50, user_snapshots=300,
                      item_snapshots=100)
    generate_raw_logs(spec, tmp_path / "a")
    generate_raw_logs(spec, tmp_path / "b")
    for f in sorted((tmp_path / "a").rglob("*.parquet")):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
