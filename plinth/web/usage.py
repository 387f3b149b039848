"""Quota usage over time for the overview's chart: average resources held per group in
equal time buckets, from the fair-share usage history (ended replica attempts) and the
workloads running now.

Pure: records and running workloads in, series out; no clock reads (``now`` is given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from plinth.scheduler.model import UsageRecord
from plinth.scheduler.resources import Resources

__all__ = ["Running", "usage_series"]


@dataclass(frozen=True)
class Running:
    """A workload holding `resources` for `group` since `start` (epoch seconds)."""

    group: str
    start: float
    resources: Resources


def usage_series(
    records: Iterable[UsageRecord], running: Iterable[Running], groups: Iterable[str],
    now: float, span_s: float = 24 * 3600, buckets: int = 96,
) -> dict[str, object]:  # fmt: skip
    """``{"t": [bucket start, epoch s], "span_s", "groups": {group: {"cpu": [cores],
    "gpu": [devices]}}}`` over ``[now - span_s, now)``: each value is the group's
    average holding during its bucket. Only `groups` appear (what the viewer may see)."""
    width = span_s / buckets
    t0 = now - span_s
    wanted = set(groups)
    out = {g: {"cpu": [0.0] * buckets, "gpu": [0.0] * buckets} for g in sorted(wanted)}
    spans = [(r.group, r.start, r.end, r.resources) for r in records]
    spans += [(w.group, w.start, now, w.resources) for w in running]
    for group, start, end, res in spans:
        if group not in wanted or end <= t0 or start >= now or end <= start:
            continue
        series = out[group]
        first = max(int((max(start, t0) - t0) // width), 0)
        last = min(int((min(end, now) - t0) // width), buckets - 1)
        for i in range(first, last + 1):
            b0 = t0 + i * width
            overlap = min(end, b0 + width) - max(start, b0)
            if overlap > 0:
                share = overlap / width
                series["cpu"][i] += res.cpu * share
                series["gpu"][i] += res.gpu * share
    for series in out.values():
        for key in ("cpu", "gpu"):
            series[key] = [round(v, 3) for v in series[key]]
    return {"t": [round(t0 + i * width, 3) for i in range(buckets)], "span_s": span_s,
            "groups": out}  # fmt: skip
