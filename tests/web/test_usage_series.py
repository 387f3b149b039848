"""The overview's usage chart: average holdings per group and bucket (pure)."""

from __future__ import annotations

from plinth.scheduler.model import UsageRecord
from plinth.scheduler.resources import Resources
from plinth.web.usage import Running, usage_series

NOW = 10_000.0


def test_holdings_are_averaged_per_bucket_and_limited_to_the_visible_groups():
    records = [
        UsageRecord("ads", 9_000.0, 9_500.0, Resources(4.0, 0, 1)),  # bucket 0 half, 1 none
        UsageRecord("recs", 9_000.0, 10_000.0, Resources(2.0, 0, 0)),
        UsageRecord("secret", 9_000.0, 10_000.0, Resources(8.0, 0, 0)),  # not visible
        UsageRecord("ads", 1_000.0, 2_000.0, Resources(9.0, 0, 0)),  # before the span
    ]
    running = [Running("ads", 9_750.0, Resources(1.0, 0, 0))]
    out = usage_series(records, running, ["ads", "recs"], NOW, span_s=1_000.0, buckets=2)
    assert out["t"] == [9_000.0, 9_500.0]
    assert set(out["groups"]) == {"ads", "recs"}
    assert out["groups"]["ads"] == {"cpu": [4.0, 0.5], "gpu": [1.0, 0.0]}
    assert out["groups"]["recs"] == {"cpu": [2.0, 2.0], "gpu": [0.0, 0.0]}


def test_no_history_gives_zero_series():
    out = usage_series([], [], ["a"], NOW, span_s=3600, buckets=4)
    assert out["groups"] == {"a": {"cpu": [0.0] * 4, "gpu": [0.0] * 4}}
    assert len(out["t"]) == 4
