"""`benchmarks/load.py --json --quick`: concurrent clients against a real server on
loopback get no 5xx and never over-admit (issue 8, Done when 6, short form)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_benchmark_quick_has_no_5xx_and_no_over_admission() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "load.py"), "--json", "--quick"],
        capture_output=True, text=True, timeout=400, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.stdout, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["total_5xx"] == 0, report
    assert report["total_other_errors"] == 0, report
    assert report["over_admission"] == {}, report
    assert report["submitted"] > 0 and report["endpoints"]["submit"]["count"] > 0
    for op in ("submit", "list", "logs", "explain", "cancel"):
        assert {"count", "p50_s", "p99_s", "5xx"} <= set(report["endpoints"][op])
    assert result.returncode == 0
