"""benchmarks/executor_launch.py runs (``--quick``) and prints one JSON object.

The figures themselves are not asserted here (no timing thresholds in tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_launch_benchmark_prints_one_json_object() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "executor_launch.py"), "--json", "--quick"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    for key in ("bare_popen_p50_s", "launch_p50_s", "launch_over_bare_p50",
                "bare_start_to_exit_p50_s", "launch_start_to_exit_p50_s"):  # fmt: skip
        assert result[key] > 0
    assert result["iterations"] == 10
