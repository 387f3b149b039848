"""`benchmarks/embedding_table.py --json --quick` runs and prints the promised JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_quick_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "embedding_table.py"), "--json", "--quick",
         "--seconds", "0.01"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    keys = {"rows", "ids", "lookup_ids_per_s", "update_ids_per_s", "gather_ids_per_s",
            "dict_ids_per_s", "bytes_per_row", "lower_bound_bytes_per_row"}
    assert {(r["rows"], r["ids"]) for r in report["results"]} == {
        (20_000, "zipf"), (20_000, "uniform"), (100_000, "zipf"), (100_000, "uniform")}
    for r in report["results"]:
        assert keys <= r.keys()
        assert r["lookup_ids_per_s"] > 0 and r["gather_ids_per_s"] > 0
        assert r["lower_bound_bytes_per_row"] == 128
        assert r["bytes_per_row"] > r["lower_bound_bytes_per_row"]
