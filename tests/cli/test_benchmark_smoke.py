"""`benchmarks/control_plane.py --json --quick` runs and reports the contract's keys."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ._helpers import REPO


@pytest.mark.slow
def test_control_plane_benchmark_quick() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "control_plane.py"), "--json", "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for key in (
        "submit_per_s",
        "latency_p50_s",
        "latency_p99_s",
        "bare_start_p50_s",
        "latency_p50_over_bare_start",
        "client_latency_p50_s",
    ):
        assert isinstance(report[key], (int, float)), key
        assert report[key] > 0, key
    assert report["latency_p99_s"] >= report["latency_p50_s"]
    assert report["jobs"] == 20


def test_the_benchmarks_share_one_percentile() -> None:
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks._stats import percentile
    finally:
        sys.path.remove(str(REPO))
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5  # the median
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)  # interpolated
    assert percentile([5.0, 1.0], 0) == 1.0 and percentile([5.0, 1.0], 100) == 5.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 95, empty=0.0) == 0.0
    for q in (-1, 101):
        with pytest.raises(ValueError):
            percentile([1.0], q)
