"""DeepFM on synthetic CTR data: Plinth's dynamic tables vs. the hashing-trick baseline.

Both runs train the same DeepFM (same dense layers, same reader, same hashed feature ids,
Adam for dense weights, Adagrad for embeddings with each model's best learning rate from
the same sweep, 2 threads, one epoch) and get the same memory budget for embeddings,
``budget_rows * dim * 4`` bytes with optimizer state included (default 250,000 rows:
16 MB, while the training split holds ~1.7M distinct ids, ~180k of them seen 8 times or
more — memory is the constraint, as it is for industrial tables):

* ``plinth``: one shared dynamic table for the 26 fields (16 embedding columns + the
  first-order weight), spending the budget through admission (``min_count``, with TinyLFU
  competition at the cap; its count-min sketch counted in the budget) and capacity
  eviction (LFU; ``max_rows`` the largest cap whose full table, measured with index,
  metadata and free list, fits beside the sketch);
* ``baseline``: plain ``nn.EmbeddingBag(sparse=True)`` with ids hashed into a fixed number
  of buckets (``budget / bytes per bucket``; 17 columns like Plinth's rows, plus Adagrad
  state), ``torch.optim.Adagrad`` on the sparse gradients — what practitioners write
  without a dynamic-table library.

Each model runs in its own subprocess, so ``peak_rss_mb`` (``ru_maxrss``) is per run. The
two processes take turns, ``--chunk-steps`` training steps at a time, and only the time
inside their chunks counts: on a shared machine whose load changes from minute to minute,
both models then see the same conditions, so the throughput ratio is fair.
``--json`` prints one JSON object: ``plinth`` and ``baseline`` (each ``samples_per_s``,
``peak_rss_mb``, ``auc``, ``logloss``, ``rows``), ``bayes_auc``, ``bayes_logloss``,
``budget_bytes`` and ratios. ``--quick`` uses a small data set (a smoke test).

    python benchmarks/train_ctr.py --json            # 2M rows, 26 cat + 13 numeric, ~10M ids
    python benchmarks/train_ctr.py --json --quick
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

from _turns import TurnWorker, take_turns

DIM = 16
# Adagrad learning rates of the embeddings, each model's best on the default data and
# budget from a sweep of {0.05, 0.02, 0.01, 0.005, 0.002} (docs/training.md): Plinth's rows
# each serve one id, so they take smaller steps than buckets shared by many.
LR_SPARSE = 0.005
LR_SPARSE_BASELINE = 0.01
LR_DENSE = 1e-3
HIDDEN = [256, 128]
THREADS = 2


def _data_spec(quick: bool, rows: int | None) -> dict[str, Any]:
    from plinth.data.synthetic import default_cardinalities

    if quick:
        return {"rows": rows or 100_000, "cards": default_cardinalities(26, 500_000), "numeric": 13}
    return {"rows": rows or 2_000_000, "cards": default_cardinalities(26, 10_000_000), "numeric": 13}


def _generate(out: Path, spec: dict[str, Any], seed: int) -> dict[str, Any]:
    from plinth.data.synthetic import SyntheticSpec, generate

    stats_path = out / "stats.json"
    want = {"rows": spec["rows"], "cardinalities": list(spec["cards"]), "seed": seed}
    if stats_path.exists():
        old = json.loads(stats_path.read_text())
        s = old.get("spec", {})
        if {k: s.get(k) for k in want} == want:
            return old  # reuse a cached data set with the same spec
    return generate(
        SyntheticSpec(rows=spec["rows"], cardinalities=tuple(spec["cards"]), multi_fields=0,
                      numeric=spec["numeric"], interactions=12, seed=seed, signal=0.8),
        out,
    )


def _schema(data: Path):
    from plinth.data.schema import Schema

    return Schema.from_yaml(data / "schema.yaml")


def _table_config(max_rows: int, storage_dtype: str, admission: dict[str, Any]) -> Any:
    from plinth.sparse.config import OptimizerConfig, TableConfig

    return TableConfig(name="emb", dim=DIM + 1, storage_dtype=storage_dtype,
                       optimizer=OptimizerConfig(kind="adagrad", lr=LR_SPARSE),
                       admission=admission,
                       eviction={"max_rows": max_rows, "policy": "lfu"})


def _footprint_at_cap(max_rows: int, storage_dtype: str) -> int:
    """Bytes of a table with this cap when it is full, sketch excluded: built as the trainer
    builds it (index sized for the cap up front), filled to its hard cap
    ``(1 + slack) * max_rows`` rows (the most a training pull lets it hold), evicted once
    (which sizes its free list) and filled again."""
    import numpy as np

    from plinth.sparse.table import EmbeddingTable
    from plinth.train.trainer import _initial_rows

    cfg = _table_config(max_rows, storage_dtype, {"min_count": 1})
    t = EmbeddingTable(cfg, initial_capacity=_initial_rows(cfg))
    cap = _initial_rows(cfg)
    ids = np.arange(1, 2 * cap + 1, dtype=np.int64) * 7919
    peak = 0
    for start in (0, cap):
        for i in range(start, start + cap, 4096):
            t.pull(ids[i:min(i + 4096, start + cap)], train=True)
        peak = max(peak, t.memory_bytes())
        t.evict()
    return peak


def plinth_budget(budget_bytes: int, min_count: int, storage_dtype: str = "float32",
                  compete: bool = True) -> dict[str, Any]:
    """Split the budget: an admission sketch of ~1/16 of it (depth 4; 16-bit counters with
    ``compete``, else 8-bit), the rest rows. A training pull never lets a capped table
    exceed ``(1 + slack) * max_rows`` rows (it evicts instead), so ``max_rows`` is the
    largest cap whose full table — measured, index and metadata included — fits beside the
    sketch. The benchmark still measures the real peak at every step."""
    from plinth.sparse.sketch import CountMinSketch

    sketch_width = 0
    sketch_bytes = 0
    if min_count > 1 or compete:
        cell = 2 if compete else 1
        sketch_width = 1 << max(4, int(budget_bytes / 16 / 4 / cell).bit_length() - 1)
        sketch_bytes = CountMinSketch(sketch_width, 4, 65535 if compete else min_count).nbytes
    room = budget_bytes - sketch_bytes
    lo, hi = 0, max(1, room // 64)  # no row costs less than 64 bytes at dim 16
    while lo < hi:  # largest max_rows whose full table fits in room
        mid = (lo + hi + 1) // 2
        if _footprint_at_cap(mid, storage_dtype) <= room:
            lo = mid
        else:
            hi = mid - 1
    if lo < 1:
        raise SystemExit(f"budget of {budget_bytes} bytes holds no rows; raise --budget-rows")
    return {"max_rows": lo, "sketch_width": sketch_width, "sketch_bytes": sketch_bytes,
            "bytes_per_row": _footprint_at_cap(lo, storage_dtype) / lo}


class _Run:
    """One model's training, advanced a chunk of steps at a time (see ``_worker``)."""

    def __init__(self, batches: Any, step: Any, evaluate: Any, info: dict[str, Any]) -> None:
        self.batches, self.step, self.evaluate, self.info = batches, step, evaluate, info


def plinth_run(data: Path, budget_bytes: int, batch_size: int, min_count: int,
               storage_dtype: str = "float32", compete: bool = True,
               tables_extra: dict[str, Any] | None = None, lr: float | None = None) -> _Run:
    from plinth.data.reader import ParquetReader
    from plinth.train.config import load_config
    from plinth.train.trainer import Trainer

    plan = plinth_budget(budget_bytes, min_count, storage_dtype, compete)
    tables = {
        # One shared table for all 26 fields; the first-order weight is its 17th column.
        "sharing": "shared",
        "optimizer": {"kind": "adagrad", "lr": lr or LR_SPARSE},
        "admission": {"min_count": min_count, "compete": compete,
                      "sketch_width": max(16, plan["sketch_width"]), "sketch_depth": 4},
        "eviction": {"max_rows": plan["max_rows"], "policy": "lfu"},
        "storage_dtype": storage_dtype,
    }
    for k, v in (tables_extra or {}).items():
        tables[k] = {**tables[k], **v} if isinstance(v, dict) and k in tables else v
    cfg = load_config({
        "data": {"train": str(data / "train"), "test": str(data / "test")},
        "schema": str(data / "schema.yaml"),
        "model": "deepfm", "embedding_dim": DIM, "hidden": HIDDEN,
        "tables": tables,
        "dense_optimizer": {"kind": "adam", "lr": LR_DENSE},
        "batch_size": batch_size, "epochs": 1, "threads": THREADS, "seed": 0,
        "output_dir": tempfile.mkdtemp(prefix="plinth-bench-"),
        "checkpoint": {"every_steps": None}, "export": {"package": False}, "progress": False,
    })
    tr = Trainer(cfg, log=lambda m: None)
    peak = [0]

    def step(batch: Any) -> None:
        tr.train_step(batch)
        # The peak footprint (cheap to read: a sum of array sizes) is what the budget caps.
        peak[0] = max(peak[0], sum(t.memory_bytes() for t in tr.tables.values()))

    def evaluate() -> dict[str, Any]:
        res = tr.evaluate(cfg.data_paths("test"))
        table_bytes = sum(t.memory_bytes() for t in tr.tables.values())
        return {
            "auc": res["auc"], "logloss": res["logloss"], "max_rows": plan["max_rows"],
            "table_rows": sum(len(t) for t in tr.tables.values()),
            "embedding_bytes": int(max(peak[0], table_bytes)),
            "embedding_bytes_end": int(table_bytes),
            "within_budget": max(peak[0], table_bytes) <= budget_bytes,
            "bytes_per_row": round(plan["bytes_per_row"], 1),
            "sketch_bytes": plan["sketch_bytes"],
        }

    reader = ParquetReader(cfg.data_paths("train"), cfg.schema, batch_size)
    return _Run(reader.iter_epoch(0), step, evaluate, {})


def baseline_run(data: Path, budget_bytes: int, batch_size: int,
                 lr: float | None = None) -> _Run:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from plinth.data.metrics import auc, logloss
    from plinth.data.reader import ParquetReader
    from plinth.train.models import build_model

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    schema = _schema(data)
    keys = schema.categorical_names
    # Like Plinth's table, one bag of DIM + 1 columns (the last is the first-order weight),
    # float32 weights + Adagrad state: the same bytes per row as the lower bound.
    per_bucket = 2 * (DIM + 1) * 4
    buckets = int(budget_bytes // per_bucket)

    class HashedBag(nn.Module):
        """One EmbeddingBag for all fields; ids hashed into ``buckets`` rows."""

        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dim = dim
            self.features = keys
            self.bag = nn.EmbeddingBag(buckets, dim, mode="sum", sparse=True)
            nn.init.normal_(self.bag.weight, std=0.01)

        def forward(self, kjt: Any) -> torch.Tensor:
            ids = kjt.values().view(np.uint64) % np.uint64(buckets)
            out = self.bag(torch.from_numpy(ids.astype(np.int64)),
                           torch.from_numpy(kjt.offsets()[:-1]))  # (F * B, dim), key-major
            return out.view(len(self.features), kjt.stride(), self.dim).transpose(0, 1)

        def apply_sparse_gradients(self) -> int:
            return 0

    emb = HashedBag(DIM + 1)
    model = build_model("deepfm", emb, None, len(schema.numeric), hidden=HIDDEN,
                        fused_linear=True)
    dense_params = [p for p in model.parameters() if p is not emb.bag.weight]
    opt_sparse = torch.optim.Adagrad([emb.bag.weight], lr=lr or LR_SPARSE_BASELINE)
    opt_dense = torch.optim.Adam(dense_params, lr=LR_DENSE)

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
            for batch in ParquetReader(data / "test", schema, 8192).iter_epoch(0):
                ps.append(torch.sigmoid(model(batch)).numpy())
                ys.append(batch.labels)
        y, p = np.concatenate(ys), np.concatenate(ps)
        return {"auc": auc(y, p), "logloss": logloss(y, p), "buckets": buckets,
                "embedding_bytes": buckets * per_bucket}

    reader = ParquetReader(data / "train", schema, batch_size)
    return _Run(reader.iter_epoch(0), step, evaluate, {})


def _worker(args: argparse.Namespace) -> int:
    """Serve the turn-taking protocol of :mod:`_turns` for one model."""
    import warnings

    from _turns import serve

    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    data = Path(args.data)
    if args.worker == "plinth":
        run = plinth_run(data, args.budget_bytes, args.batch_size, args.min_count,
                         args.storage_dtype, compete=not args.no_compete, lr=args.sparse_lr)
    else:
        run = baseline_run(data, args.budget_bytes, args.batch_size,
                           lr=args.baseline_sparse_lr)
    return serve(run.batches, run.step, run.evaluate)


def _worker_command(name: str, data: Path, args: argparse.Namespace,
                    budget_bytes: int) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", name, "--data", str(data),
           "--budget-bytes", str(budget_bytes), "--batch-size", str(args.batch_size),
           "--min-count", str(args.min_count), "--storage-dtype", args.storage_dtype,
           "--sparse-lr", str(args.sparse_lr),
           "--baseline-sparse-lr", str(args.baseline_sparse_lr)]
    return cmd + (["--no-compete"] if args.no_compete else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="small data set (smoke test)")
    ap.add_argument("--rows", type=int, default=None, help="total rows (train + test)")
    ap.add_argument("--budget-rows", type=int, default=None,
                    help="embedding budget in rows of dim x 4 bytes, optimizer state "
                         "included (default 250000 = 16 MB)")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--min-count", type=int, default=8, help="Plinth admission min_count")
    ap.add_argument("--storage-dtype", choices=["float32", "float16"], default="float32",
                    help="Plinth's value storage (optimizer state stays float32)")
    ap.add_argument("--sparse-lr", type=float, default=LR_SPARSE,
                    help="Adagrad learning rate of Plinth's embedding rows")
    ap.add_argument("--baseline-sparse-lr", type=float, default=LR_SPARSE_BASELINE,
                    help="Adagrad learning rate of the baseline's buckets")
    ap.add_argument("--no-compete", action="store_true",
                    help="Plinth admission without TinyLFU competition at the cap")
    ap.add_argument("--data-dir", type=str, default=None, help="reuse/keep the data set here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-steps", type=int, default=10,
                    help="steps each model runs before the other takes its turn")
    ap.add_argument("--worker", choices=["plinth", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--budget-bytes", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)

    spec = _data_spec(args.quick, args.rows)
    budget_rows = args.budget_rows or 250_000
    budget_bytes = budget_rows * DIM * 4
    tmp = None
    if args.data_dir:
        data = Path(args.data_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="plinth-train-ctr-")
        data = Path(tmp.name)
    t0 = time.perf_counter()
    stats = _generate(data, spec, args.seed)
    gen_s = time.perf_counter() - t0
    workers = {name: TurnWorker(name, _worker_command(name, data, args, budget_bytes), ROOT)
               for name in ("baseline", "plinth")}
    results = take_turns(workers, args.chunk_steps)
    if tmp is not None:
        tmp.cleanup()
    p, b = results["plinth"], results["baseline"]
    out = {
        "plinth": p,
        "baseline": b,
        "bayes_auc": stats["bayes_auc"],
        "bayes_logloss": stats["bayes_logloss"],
        "budget_rows": budget_rows,
        "budget_bytes": budget_bytes,
        "data": {"train_rows": stats["train_rows"], "test_rows": stats["test_rows"],
                 "categorical": len(spec["cards"]), "numeric": spec["numeric"],
                 "cardinality_total": int(sum(spec["cards"])), "generate_s": round(gen_s, 2)},
        "throughput_ratio": p["samples_per_s"] / b["samples_per_s"],
        "auc_gain": p["auc"] - b["auc"],
        "logloss_gain": b["logloss"] - p["logloss"],
        "plinth_gap_to_bayes_auc": stats["bayes_auc"] - p["auc"],
        "baseline_gap_to_bayes_auc": stats["bayes_auc"] - b["auc"],
        "threads": THREADS,
        "min_count": args.min_count,
        "compete": not args.no_compete,
        "sparse_lr": {"plinth": args.sparse_lr, "baseline": args.baseline_sparse_lr},
        "storage_dtype": args.storage_dtype,
        "quick": args.quick,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
