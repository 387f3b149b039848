"""benchmarks/ray_submit.py runs (``--quick``) and prints one JSON object with both
sides: Plinth on Ray and Ray's own Jobs API, on a Ray cluster it starts itself.

The figures themselves are not asserted here (no timing thresholds in tests): only
that both sides ran every job to success and reported the four numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_ray_submit_benchmark_prints_both_sides() -> None:
    pytest.importorskip("ray.job_submission", reason="needs ray[default] (the test extra)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ray_submit.py"), "--json", "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    for side in ("plinth", "ray_jobs"):
        figures = result[side]
        for key in ("submit_per_s", "completed_per_s", "latency_p50_s", "latency_p99_s"):
            assert figures[key] > 0, (side, key, figures)
        assert figures["latency_p99_s"] >= figures["latency_p50_s"]
        assert figures["succeeded"] == result["burst"] == 4
    assert result["latency_p50_ratio"] > 0 and result["completed_per_s_ratio"] > 0
