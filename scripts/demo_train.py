"""``make demo`` step: synthetic CTR data -> ``plinth train local`` -> test AUC vs Bayes-optimal.

Generates a small synthetic set (known ground truth) in a temporary directory, trains the
example DeepFM (examples/ctr/config.yaml) on it through ``plinth train local --json``
(``python -m plinth.train local`` when the control-plane CLI lacks the command), and prints
the test AUC and log loss next to the best any model could reach on that test split.
Takes well under a minute. Exits non-zero if any step fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ctr" / "config.yaml"


def _train_command(config: Path) -> list[str]:
    plinth = Path(sys.executable).parent / "plinth"
    if plinth.exists():
        probe = subprocess.run([str(plinth), "train", "local", "--help"], capture_output=True,
                               check=False)
        if probe.returncode == 0:
            return [str(plinth), "train", "local", str(config), "--json"]
    return [sys.executable, "-m", "plinth.train", "local", str(config), "--json"]


def main() -> int:
    from plinth.data.synthetic import SyntheticSpec, default_cardinalities, generate

    work = Path(tempfile.mkdtemp(prefix="plinth-demo-train-"))
    try:
        t0 = time.perf_counter()
        stats = generate(
            SyntheticSpec(rows=60_000, cardinalities=default_cardinalities(8, 50_000),
                          multi_fields=1, multi_cardinality=5_000, numeric=4, seed=0),
            work / "data",
        )
        print(f"generated {stats['train_rows']} train + {stats['test_rows']} test rows "
              f"in {time.perf_counter() - t0:.1f}s ({work / 'data'})", flush=True)
        cfg = yaml.safe_load(EXAMPLE.read_text())
        cfg["output_dir"] = str(work / "run")
        cfg_path = work / "data" / "config.yaml"  # data/ paths in the example resolve here
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        cfg["data"] = {"train": "train", "test": "test"}
        cfg["schema"] = "schema.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        cmd = _train_command(cfg_path)
        print("$ " + " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)),
              flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        if r.returncode != 0:
            print(r.stderr[-4000:], file=sys.stderr)
            print(f"training failed with exit code {r.returncode}", file=sys.stderr)
            return 1
        res = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"trained {res['model']} for {res['steps']} steps at "
              f"{res['samples_per_s']:,.0f} samples/s; table rows {res['table_rows']}")
        print(f"test AUC      {res['auc']:.4f}   (Bayes-optimal {stats['bayes_auc']:.4f})")
        print(f"test log loss {res['logloss']:.4f}   (Bayes-optimal {stats['bayes_logloss']:.4f})")
        pkg = Path(res["package"])
        print(f"model package: {', '.join(sorted(p.name for p in pkg.iterdir()))}", flush=True)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
