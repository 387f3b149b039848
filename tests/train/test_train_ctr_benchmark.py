"""`benchmarks/train_ctr.py --json --quick` runs both models and reports the contract's keys."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_ctr_benchmark_quick(tmp_path):
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_ctr.py"), "--json", "--quick",
         "--rows", "20000", "--batch-size", "1024", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=280, check=False, cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("plinth", "baseline"):
        run = report[name]
        for key in ("samples_per_s", "peak_rss_mb", "auc", "logloss"):
            assert isinstance(run[key], float) and run[key] > 0, (name, key)
        assert run["rows"] == 18000
        assert run["embedding_bytes"] <= report["budget_bytes"]
    assert 0.5 < report["bayes_auc"] < 1
    assert report["budget_bytes"] == report["budget_rows"] * 16 * 4
