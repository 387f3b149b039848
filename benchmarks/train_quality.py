"""Training quality out of the box: Plinth's defaults vs a careful practitioner's script.

For each generator profile (:data:`plinth.data.synthetic.PROFILES`: raw heavy-tailed counts
with no transform declared, positive rates 1-20%, 20-40 fields, cardinalities 10 to 10M,
multi-valued fields, missing values) the same generated data is trained on, one epoch, by

* ``plinth``: ``plinth.train`` with the **default config** — only the data, the schema
  (label and columns, as the generator wrote it) and ``model: deepfm`` are named;
* ``baseline``: the practitioner's PyTorch script of issue 10 — the hashing trick into
  2^22 rows, ``nn.EmbeddingBag(sparse=True)`` (16 columns, plus a 1-column bag for the
  first-order weights) trained by ``SparseAdam(1e-3)``, dense ``Adam(1e-3)``, numerics
  null -> 0, ``log1p``, standardised with the training sample's mean and std, the output
  bias started at the base rate's log-odds, FM interactions and an MLP of 400-400
  (DeepFM), batch 4096.

Each model runs in its own subprocess; the two take turns, ``--chunk-steps`` steps at a
time, and only the time inside their turns counts, so a shared machine's changing load
hits both alike (the throughput ratio is fair). Both read the Parquet files with the same
reader and hashed ids. ``--json`` prints one JSON object: ``profiles``, a list of
``{name, rows, bayes_auc, plinth: {auc, logloss, samples_per_s}, baseline: {...}}`` plus
per-profile ratios and whether the issue's target holds (AUC >= baseline + 0.002, lower
log loss, >= 1.5x samples/s). ``--quick`` is a smoke test on tiny data.

    python benchmarks/train_quality.py --json                     # 3 profiles, --rows each
    python benchmarks/train_quality.py --json --quick
    python benchmarks/train_quality.py --json --profiles criteo_like --set batch_size=4096
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _turns import TurnWorker, serve, take_turns

DEFAULT_PROFILES = ("criteo_like", "rare_clicks", "dense_engagement")
DEFAULT_ROWS = 200_000  # per profile, train + test (10% test): minutes per profile
QUICK_ROWS = 6_000
BASELINE_BUCKETS = 1 << 22
BASELINE_BATCH = 4096
BASELINE_HIDDEN = (400, 400)
DIM = 16
THREADS = 2
AUC_MARGIN = 0.002
SPEEDUP = 1.5


def _generate(name: str, rows: int, out: Path, seed: int, quick: bool) -> dict[str, Any]:
    from plinth.data.synthetic import generate, log_cardinalities, profile

    over: dict[str, Any] = {"row_group_size": 16_384}
    if quick:  # tiny and fast: a handful of fields, small vocabularies
        over.update(cardinalities=log_cardinalities(4, 10, 2000), numeric=3,
                    multi_cardinality=500, interactions=2, row_group_size=1000)
    spec = profile(name, rows, seed, **over)
    stats_path = out / "stats.json"
    if stats_path.exists():
        old = json.loads(stats_path.read_text())
        if old.get("spec", {}).get("rows") == rows and old["spec"].get("seed") == seed and (
                list(old["spec"].get("cardinalities", [])) == list(spec.cardinalities)):
            return old  # a cached data set of the same spec
    return generate(spec, out)


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


def _set_key(d: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for k in path:
        d = d.setdefault(k, {})
    d[last] = value


class _Run:
    """One model's training, advanced a chunk of steps at a time (see ``_worker``)."""

    def __init__(self, batches: Any, step: Any, evaluate: Any) -> None:
        self.batches, self.step, self.evaluate = batches, step, evaluate


def plinth_run(data: Path, overrides: list[str]) -> _Run:
    """The default config: only data, schema (label and columns) and model are named."""
    from plinth.train.config import load_config
    from plinth.train.trainer import Trainer

    raw: dict[str, Any] = {
        "data": {"train": str(data / "train"), "test": str(data / "test")},
        "schema": str(data / "schema.yaml"),
        "model": "deepfm",
        # Plumbing, not tuning: where files go, and no progress bar.
        "output_dir": tempfile.mkdtemp(prefix="plinth-quality-"), "progress": False,
    }
    for item in overrides:  # --set key=value, for sweeps
        k, _, v = item.partition("=")
        _set_key(raw, k, _parse_value(v))
    cfg = load_config(raw)
    tr = Trainer(cfg, log=lambda m: None)

    def evaluate() -> dict[str, Any]:
        res = tr.evaluate(cfg.data_paths("test"))
        return {"auc": res["auc"], "logloss": res["logloss"],
                "table_rows": sum(len(t) for t in tr.tables.values()),
                "config": {k: v for k, v in cfg.to_dict().items()
                           if k in ("batch_size", "hidden", "tables", "dense_optimizer",
                                    "warmup_steps", "embedding_dim")}}

    return _Run(tr.train_reader().iter_epoch(0), tr.train_step, evaluate)


def baseline_run(data: Path) -> _Run:
    """The practitioner's script (module docstring), on the same reader and hashed ids."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from plinth.data.metrics import auc, logloss
    from plinth.data.normalize import ColumnTransform, Normalizer, read_sample
    from plinth.data.reader import ParquetReader, expand_paths
    from plinth.data.schema import Schema

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    schema = Schema.from_yaml(data / "schema.yaml")
    sample = read_sample(expand_paths(data / "train"), schema, 100_000)
    cols = []
    for f in schema.numeric:  # fillna(0) -> log1p -> (x - mean) / std
        x = np.log1p(np.nan_to_num(sample.numeric[f.name], nan=0.0).clip(min=0))
        mean, std = float(x.mean()), float(x.std()) or 1.0
        cols.append(ColumnTransform(f.name, log1p=True, center=mean, scale=std,
                                    fill_z=(0.0 - mean) / std))
    norm = Normalizer(tuple(cols))
    p = float(sample.labels.mean())
    n_fields, n_dense = len(schema.categorical), norm.width

    class DeepFM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.EmbeddingBag(BASELINE_BUCKETS, DIM, mode="mean", sparse=True)
            self.first = nn.EmbeddingBag(BASELINE_BUCKETS, 1, mode="mean", sparse=True)
            nn.init.normal_(self.emb.weight, std=0.01)
            nn.init.zeros_(self.first.weight)
            self.dense_first = nn.Linear(n_dense, 1)
            self.dense_vec = nn.Linear(n_dense, DIM)
            layers: list[nn.Module] = []
            n_in = n_fields * DIM + n_dense
            for h in BASELINE_HIDDEN:
                layers += [nn.Linear(n_in, h), nn.ReLU()]
                n_in = h
            layers.append(nn.Linear(n_in, 1))
            self.mlp = nn.Sequential(*layers)
            with torch.no_grad():
                self.dense_first.bias.fill_(float(np.log(p / (1 - p))))
                self.mlp[-1].bias.zero_()

        def forward(self, batch: Any) -> torch.Tensor:
            kjt = batch.sparse
            b = kjt.stride()
            ids = torch.from_numpy((kjt.values().view(np.uint64) % np.uint64(BASELINE_BUCKETS))
                                   .astype(np.int64))
            offsets = torch.from_numpy(kjt.offsets()[:-1])
            e = self.emb(ids, offsets).view(n_fields, b, DIM).transpose(0, 1)
            w = self.first(ids, offsets).view(n_fields, b).sum(0)
            dense = torch.from_numpy(batch.dense)
            v = torch.cat([e, self.dense_vec(dense).unsqueeze(1)], dim=1)
            s = v.sum(1)
            fm = 0.5 * (s * s - (v * v).sum(1)).sum(1)
            deep = self.mlp(torch.cat([e.flatten(1), dense], dim=1)).squeeze(1)
            return w + self.dense_first(dense).squeeze(1) + fm + deep

    model = DeepFM()
    sparse_params = [model.emb.weight, model.first.weight]
    dense_params = [q for q in model.parameters() if all(q is not s for s in sparse_params)]
    opt_sparse = torch.optim.SparseAdam(sparse_params, lr=1e-3)
    opt_dense = torch.optim.Adam(dense_params, lr=1e-3)

    def step(batch: Any) -> None:
        model.train()
        loss = F.binary_cross_entropy_with_logits(model(batch), torch.from_numpy(batch.labels))
        opt_sparse.zero_grad(set_to_none=True)
        opt_dense.zero_grad(set_to_none=True)
        loss.backward()
        opt_sparse.step()
        opt_dense.step()

    def evaluate() -> dict[str, Any]:
        ys, ps = [], []
        model.eval()
        with torch.no_grad():
            for batch in ParquetReader(data / "test", schema, 8192,
                                       normalizer=norm).iter_epoch(0):
                ps.append(torch.sigmoid(model(batch)).numpy())
                ys.append(batch.labels)
        y, pr = np.concatenate(ys), np.concatenate(ps)
        return {"auc": auc(y, pr), "logloss": logloss(y, pr)}

    reader = ParquetReader(data / "train", schema, BASELINE_BATCH, normalizer=norm)
    return _Run(reader.iter_epoch(0), step, evaluate)


def _worker(args: argparse.Namespace) -> int:
    """Serve the turn-taking protocol of :mod:`_turns` for one model."""
    import warnings

    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    data = Path(args.data)
    run = plinth_run(data, args.set or []) if args.worker == "plinth" else baseline_run(data)
    return serve(run.batches, run.step, run.evaluate)


def _worker_command(name: str, data: Path, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", name, "--data", str(data)]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def run_profile(name: str, data: Path, stats: dict[str, Any], args: argparse.Namespace,
                ) -> dict[str, Any]:
    """Both models on one profile's data, taking turns of ``--chunk-steps`` steps."""
    workers = {n: TurnWorker(n, _worker_command(n, data, args.set or []), ROOT)
               for n in ("baseline", "plinth")}
    results = take_turns(workers, args.chunk_steps)
    p, b = results["plinth"], results["baseline"]
    ratio = p["samples_per_s"] / b["samples_per_s"] if b["samples_per_s"] else 0.0
    return {
        "name": name, "rows": stats["train_rows"] + stats["test_rows"],
        "train_rows": stats["train_rows"], "test_rows": stats["test_rows"],
        "positive_rate": stats["ctr"], "bayes_auc": stats["bayes_auc"],
        "bayes_logloss": stats["bayes_logloss"], "plinth": p, "baseline": b,
        "auc_gain": p["auc"] - b["auc"], "logloss_gain": b["logloss"] - p["logloss"],
        "throughput_ratio": ratio,
        "target_met": bool(p["auc"] >= b["auc"] + AUC_MARGIN and p["logloss"] < b["logloss"]
                           and ratio >= SPEEDUP),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="tiny data (smoke test)")
    ap.add_argument("--rows", type=int, default=None,
                    help=f"rows per profile, train + test (default {DEFAULT_ROWS:,})")
    ap.add_argument("--profiles", default=",".join(DEFAULT_PROFILES),
                    help="comma-separated profile names")
    ap.add_argument("--data-dir", default=None, help="keep/reuse generated data here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-steps", type=int, default=5,
                    help="steps each model runs before the other takes its turn")
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                    help="override a Plinth config key (sweeps), e.g. batch_size=4096")
    ap.add_argument("--worker", choices=["plinth", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)

    rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    tmp = None
    if args.data_dir:
        root = Path(args.data_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="plinth-train-quality-")
        root = Path(tmp.name)
    t0 = time.perf_counter()
    out_profiles = []
    try:
        for name in [p for p in args.profiles.split(",") if p]:
            data = root / f"{name}-{rows}-{args.seed}{'-quick' if args.quick else ''}"
            stats = _generate(name, rows, data, args.seed, args.quick)
            out_profiles.append(run_profile(name, data, stats, args))
    finally:
        if tmp is not None:
            tmp.cleanup()
    out = {
        "profiles": out_profiles,
        "all_targets_met": all(p["target_met"] for p in out_profiles),
        "target": {"auc_margin": AUC_MARGIN, "speedup": SPEEDUP},
        "overrides": args.set or [],
        "quick": args.quick,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
