"""`benchmarks/ps_throughput.py --json --smoke` runs and prints the promised JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_smoke_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ps_throughput.py"), "--json", "--smoke"],
        capture_output=True, text=True, timeout=900, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [t["shards"] for t in report["transport"]] == [2]
    for t in [*report["transport"], report["in_process"]]:
        assert t["pull_ids_per_s"] > 0 and t["push_ids_per_s"] > 0
    assert report["pull_push_ratio_2_shards"] > 0
    e2e = report["end_to_end"]
    assert e2e["workers_1_samples_per_s"] > 0 and e2e["workers_2_samples_per_s"] > 0
