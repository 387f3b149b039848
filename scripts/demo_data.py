"""``make demo`` step: raw logs -> ``plinth data build`` -> ``plinth data stats`` -> training.

Generates a week of raw logs with a planted truth (impressions, delayed clicks and
conversions, duplicates, late events, feature snapshots that change), builds the
samples, checks them against the truth, writes the statistics report, and trains on the
first six days with the seventh as the test split. Exits non-zero if any step fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import yaml

from plinth.data import manifest as mf
from plinth.data.rawlogs import RawLogSpec, generate_raw_logs

ROOT = Path(__file__).resolve().parent.parent
PLINTH = [sys.executable, "-m", "plinth.cli.main"]


def _run(args: list[str], cwd: Path) -> str:
    print(f"$ plinth {' '.join(args)}", flush=True)
    r = subprocess.run([*PLINTH, *args], cwd=cwd, check=False, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"`plinth {' '.join(args)}` exited with {r.returncode}")
    return r.stdout


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="plinth-data-demo-"))
    try:
        counts = generate_raw_logs(RawLogSpec(impressions=140_000, days=7, users=5_000,
                                              items=1_000, user_snapshots=20_000,
                                              item_snapshots=5_000, base_ctr=0.12), work)
        print(f"raw logs: {json.dumps(counts)}")
        built = json.loads(_run(["data", "build", "spec.yaml", "-o", "json"], work))
        print(f"built {len(built['days_built'])} days, {built['rows']} rows")
        again = json.loads(_run(["data", "build", "spec.yaml", "-o", "json"], work))
        print(f"rerun: {len(again['days_built'])} days rebuilt (nothing to do)")
        m = mf.read_manifest(work / "dataset")
        out = pl.read_parquet(mf.dataset_files(work / "dataset", m))
        truth = pl.read_parquet(work / "truth.parquet")
        j = out.join(truth, on=["request_id", "item_id"], suffix="_truth")
        wrong = sum(int((j[c] != j[f"{c}_truth"]).sum()) for c in ("click", "conversion",
                                                                     "u_segment", "i_price"))
        print(f"rows that differ from the planted truth: {wrong}")
        if wrong:
            return 1
        report = work / "report.html"
        _run(["data", "stats", "dataset", "--html", str(report)], work)
        days = sorted(m["days"])
        (work / "train.yaml").write_text(yaml.safe_dump({
            "data": {"train": [f"dataset/date={d}/*.parquet" for d in days[:-1]],
                     "test": f"dataset/date={days[-1]}/*.parquet"},
            "schema": "dataset/schema.yaml", "model": "deepfm", "embedding_dim": 8,
            "batch_size": 1024, "output_dir": "runs", "progress": False,
            "checkpoint": {"every_steps": None},
        }))
        result = json.loads(_run(["train", "local", "train.yaml", "--json"], work)
                            .strip().splitlines()[-1])
        print(f"trained on days {days[0]}..{days[-2]}, tested on {days[-1]}: "
              f"AUC {result['auc']:.4f}, log loss {result['logloss']:.4f}")
        kept = ROOT / "runs" / "data-demo-report.html"
        kept.parent.mkdir(exist_ok=True)
        shutil.copy(report, kept)
        print(f"statistics report: {kept}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
