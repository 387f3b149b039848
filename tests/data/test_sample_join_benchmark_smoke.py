"""`benchmarks/sample_join.py --smoke --json` runs both sides and reports the contract's keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sample_join_benchmark_smoke(tmp_path):
    pytest.importorskip("duckdb")
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sample_join.py"), "--json", "--smoke",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=280, check=False, cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    for side in ("plinth", "duckdb"):
        run = report[side]
        assert run["rows"] == report["sizes"]["impressions"]
        assert run["rows_per_s"] > 0 and run["peak_rss_mb"] > 0
    assert report["outputs_equal"] is True
