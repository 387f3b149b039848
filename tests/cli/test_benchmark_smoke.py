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
