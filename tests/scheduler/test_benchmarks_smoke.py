"""The scheduler benchmarks run (``--quick``) and print the documented JSON.

Timing targets are checked by the benchmarks themselves, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--json", "--quick"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=True,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stdout
    return json.loads(lines[0])


@pytest.mark.slow
def test_cycle_benchmark_json() -> None:
    d = _run("scheduler_cycle.py")
    assert d["cycles"]
    for c in d["cycles"]:
        assert {"pending", "nodes", "groups", "p50_ms", "p99_ms"} <= set(c)
        assert c["p50_ms"] > 0 and c["p99_ms"] >= c["p50_ms"]
        assert c["baseline_naive_fifo_p50_ms"] > 0
    assert d["admissions_per_s"] > 0 and d["baseline_admissions_per_s"] > 0


@pytest.mark.slow
def test_sim_benchmark_json() -> None:
    d = _run("scheduler_sim.py")
    assert set(d["policies"]) == {"fifo", "kueue_like", "plinth"}
    for p in d["policies"].values():
        assert {"utilization", "jain_index", "preemptions", "wait_p95_s", "wait_mean_s",
                "wasted_gpu_hours"} <= set(p)
        assert 0 <= p["utilization"] <= 1 and 0 < p["jain_index"] <= 1
        assert set(p["wait_p95_s"]) == set(p["wait_mean_s"])
    # Same trace for every policy.
    assert len({p["workloads"] for p in d["policies"].values()}) == 1
