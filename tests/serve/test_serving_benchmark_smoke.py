"""`benchmarks/serving.py --json --quick` runs and prints the promised JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serving_benchmark_quick_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--json", "--quick",
         "--seconds", "0.2", "--levels", "1,2", "--unbatched"],
        capture_output=True, text=True, timeout=280, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("plinth", "baseline", "plinth_unbatched"):
        assert set(report[name]) == {"max_qps_p99_under_50ms", "levels"}
        assert [lv["concurrency"] for lv in report[name]["levels"]] == [1, 2]
        for lv in report[name]["levels"]:
            assert set(lv) == {"concurrency", "qps", "p50_ms", "p99_ms", "errors"}
            assert lv["errors"] == 0 and lv["qps"] > 0
    assert "qps_ratio" in report and "load_avg" in report
    assert "unbatched_qps_ratio" in report
