"""`benchmarks/train_quality.py --json --quick` trains both models on a profile and reports
the contract's keys."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_quality_benchmark_quick(tmp_path):
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_quality.py"), "--json", "--quick",
         "--rows", "3000", "--profiles", "criteo_like", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    (p,) = report["profiles"]
    assert p["name"] == "criteo_like" and p["rows"] == 3000 and 0.5 < p["bayes_auc"] < 1
    for side in ("plinth", "baseline"):
        for key in ("auc", "logloss", "samples_per_s"):
            assert isinstance(p[side][key], float) and p[side][key] > 0, (side, key)
    assert isinstance(p["target_met"], bool)
