"""Train and evaluate a CTR model on Parquet data with dynamic embedding tables.

:class:`Trainer` builds, from a :class:`~plinth.train.config.TrainConfig`, the tables
(:mod:`plinth.sparse.table`), the model (:mod:`plinth.train.models`) and a torch optimizer
for the dense part, then runs:

* ``fit()``: epochs over the train split with a progress bar (stderr), a checkpoint every
  ``checkpoint.every_steps`` and at the end, delta exports every
  ``export.delta_every_steps``; resumes from the newest checkpoint in
  ``<output_dir>/checkpoints`` when there is one; evaluates the test split and writes the
  model package. Returns the result dict (test ``auc``, ``logloss``, train
  ``samples_per_s`` ...).
* ``evaluate(paths)``: AUC and log loss on a split.
* ``request_stop()``: checkpoint after the current step and raise
  :class:`TrainingInterrupted` — ``plinth train local`` calls it on SIGTERM, so a
  preempted job keeps its progress and resumes where it stopped.

Before anything else, one pass over the first ``normalize.stats_rows`` training rows learns
the numeric transforms (:mod:`plinth.data.normalize`) and the base rate; the model starts
calibrated at it (``CTRModel.calibrate``).

One training step: warm-up scaling of every learning rate (:mod:`plinth.train.stability`)
-> forward -> BCE-with-logits loss (mean over the batch) -> the divergence guard (raises
:class:`TrainingDiverged` before anything is applied) -> backward -> dense
``optimizer.step()`` -> ``model.apply_sparse_gradients()`` (rows go to the tables' own
optimizers) -> ``table.advance(step)``; TTL eviction runs every
``tables.eviction.every_steps`` steps (capacity eviction happens inside the tables).

Checkpoint layout (written to a temporary directory, fsynced, renamed into place, then
``LATEST`` is replaced atomically — a crash leaves the previous checkpoint intact)::

    <output_dir>/checkpoints/LATEST            "step-00000120"
    <output_dir>/checkpoints/step-00000120/
        state.json    step, epoch, reader position, samples seen, config, rng state file
        dense.pt      model.state_dict() and the dense optimizer's state_dict()
        tables.pkl    {table name: EmbeddingTable.state_dict()} (rows + optimizer state)

Model packages and deltas: see :mod:`plinth.train.package`.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from plinth.data.metrics import auc, calibration_by_decile, logloss
from plinth.data.normalize import Normalizer, fit_normalizer
from plinth.data.reader import ParquetReader
from plinth.sparse.config import Admission, Eviction, OptimizerConfig, TableConfig
from plinth.sparse.jagged import Batch
from plinth.sparse.module import FeatureSpec, SparseEmbedding, TableLike
from plinth.sparse.table import EmbeddingTable
from plinth.train.config import ConfigError, TrainConfig
from plinth.train.models import CTRModel, build_model, needs_embedding, needs_linear
from plinth.train.package import export_delta, export_package
from plinth.train.stability import DivergenceGuard, base_rate_logloss, warmup_scale

__all__ = [
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_ctr_model",
    "build_table_configs",
    "fuses_linear",
]


class TrainingInterrupted(Exception):
    """``request_stop()`` was honoured: a checkpoint was written and training stopped."""

    def __init__(self, checkpoint: Path, step: int) -> None:
        super().__init__(f"training stopped at step {step}; checkpoint {checkpoint}")
        self.checkpoint, self.step = checkpoint, step

class TrainingDiverged(Exception):
    """The loss became NaN or exploded; the message names the settings to change. Nothing
    of the diverged step was applied and no checkpoint was written after it."""

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


# Config keys that fix the shapes of what a checkpoint holds: a resume with other values
# would fail deep inside load_state_dict, so it is refused up front with a clear message.
_ARCH_KEYS = ("model", "embedding_dim", "hidden", "cross_layers", "bottom", "schema")
_TABLE_KEYS = ("sharing", "linear_optimizer")


def _opt(o: Any) -> OptimizerConfig:
    return OptimizerConfig(**o.model_dump())


def fuses_linear(cfg: TrainConfig) -> bool:
    """Whether first-order weights ride in the embedding table as its last column."""
    return (needs_embedding(cfg.model) and needs_linear(cfg.model)
            and cfg.tables.linear_optimizer is None)


def build_table_configs(
    cfg: TrainConfig,
) -> tuple[dict[str, TableConfig], dict[str, list[FeatureSpec]]]:
    """Table configs by name and, per sparse module (``embedding``/``linear``), its features.

    With :func:`fuses_linear`, the ``embedding`` tables have ``embedding_dim + 1`` columns
    and there is no ``linear`` module.
    """
    t = cfg.tables
    adm = Admission(**t.admission.model_dump())
    ev = t.eviction.model_dump()
    ev.pop("every_steps")
    evict = Eviction(**ev)
    tables: dict[str, TableConfig] = {}
    features: dict[str, list[FeatureSpec]] = {}
    groups = []
    fused = fuses_linear(cfg)
    # First-order weights start at zero, as in LR/FTRL practice: fused, as the table's last
    # column (zero_init_columns=1); separate, as a table initialised to zero.
    if needs_embedding(cfg.model):
        dim = cfg.embedding_dim + (1 if fused else 0)
        groups.append(("embedding", "emb", dim, _opt(t.optimizer), t.init_std, int(fused)))
    if needs_linear(cfg.model) and not fused:
        lin_opt = t.linear_optimizer if t.linear_optimizer is not None else t.optimizer
        groups.append(("linear", "linear", 1, _opt(lin_opt), 0.0, 0))
    seed = cfg.seed * 1000
    for module, prefix, dim, opt, init_std, zero_cols in groups:
        specs = []
        for f in cfg.schema.categorical:
            name = prefix if t.sharing == "shared" else f"{prefix}.{f.name}"
            if name not in tables:
                seed += 1
                tables[name] = TableConfig(
                    name=name, dim=dim, optimizer=opt, init_std=init_std,
                    zero_init_columns=zero_cols, admission=adm,
                    eviction=evict, storage_dtype=t.storage_dtype, seed=seed,
                )
            specs.append(FeatureSpec(f.name, name, f.pooling.value))
        features[module] = specs
    return tables, features


def _initial_rows(tc: TableConfig) -> int:
    """Index sizing hint: a capped table gets its index for the whole cap up front (pages
    are committed as slots fill), so it never rehashes and its footprint at the cap is
    known in advance; an uncapped one starts small and grows."""
    ev = tc.eviction
    return 1024 if ev.max_rows is None else max(1024, int(ev.max_rows * (1.0 + ev.slack)))


def build_ctr_model(
    cfg: TrainConfig,
    tables: dict[str, TableLike],
    features: dict[str, list[FeatureSpec]],
    n_dense: int | None = None,
) -> CTRModel:
    """The model of ``cfg`` over the given tables (local tables or parameter-server clients).

    ``n_dense``: width of the dense input (:attr:`Normalizer.width`: numeric columns plus
    missing indicators); default one column per numeric field."""
    emb = lin = None
    fused = fuses_linear(cfg)
    if "embedding" in features:
        emb_tables = {f.table: tables[f.table] for f in features["embedding"]}
        dim = cfg.embedding_dim + (1 if fused else 0)
        emb = SparseEmbedding(emb_tables, features["embedding"], dim)
    if "linear" in features:
        lin_tables = {f.table: tables[f.table] for f in features["linear"]}
        lin = SparseEmbedding(lin_tables, features["linear"], 1)
    return build_model(
        cfg.model, emb, lin, len(cfg.schema.numeric) if n_dense is None else n_dense,
        hidden=cfg.hidden, dropout=cfg.dropout,
        cross_layers=cfg.cross_layers, bottom=cfg.bottom, fused_linear=fused,
    )


def _dense_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.dense_optimizer
    params = list(params)
    if o.kind == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.kind == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.kind == "adagrad":
        return torch.optim.Adagrad(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, write: Callable[[Any], None]) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


class Trainer:
    """Owns tables, model, dense optimizer and the loop; see the module docstring."""

    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] | None = None,
                 tables: Mapping[str, TableLike] | None = None) -> None:
        self.cfg = cfg
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.train_files = ParquetReader(cfg.data_paths("train"), cfg.schema, 1).files
        # One pass over the first rows: numeric transforms and the base rate.
        self.normalizer, sample = fit_normalizer(
            self.train_files, cfg.schema, cfg.normalize.stats_rows, cfg.normalize.clip)
        self.base_rate = sample.base_rate
        self.table_configs, self.features = build_table_configs(cfg)
        # `tables` (issue 11): other TableLike objects for these configs, e.g. parameter-
        # server clients (plinth.train.distributed); by default local EmbeddingTables.
        self.tables: dict[str, Any] = dict(tables) if tables is not None else {
            name: EmbeddingTable(tc, initial_capacity=_initial_rows(tc))
            for name, tc in self.table_configs.items()
        }
        self.model = build_ctr_model(cfg, self.tables, self.features, self.normalizer.width)
        if self.base_rate is not None:
            self.model.calibrate(self.base_rate)
        self.optimizer = _dense_optimizer(cfg, self.model.parameters())
        self.guard = DivergenceGuard(base_rate_logloss(self.base_rate), cfg.guard.explode_factor,
                                     cfg.guard.min_steps)
        self.loss_curve: list[tuple[int, float]] = []  # (step, smoothed loss) for reports
        self.step = 0
        self.epoch = 0
        self.position = 0  # samples of self.epoch already trained on
        self.samples_seen = 0
        self.train_seconds = 0.0
        self.resumed_from: int | None = None
        self.delta_seq = 0
        self._delta_step = 0  # step of the last delta export
        self._stop = False
        self.ckpt_dir = cfg.output_path / "checkpoints"

    # ---- steps --------------------------------------------------------------------------
    def _set_lr_scale(self, scale: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.dense_optimizer.lr * scale
        for t in self.tables.values():
            if hasattr(t, "set_lr_scale"):
                t.set_lr_scale(scale)

    def train_step(self, batch: Batch) -> float:
        """One optimisation step on ``batch``; returns the mean loss.

        Raises :class:`TrainingDiverged` (before applying anything) when the guard says so."""
        self.model.train()
        if self.step < self.cfg.warmup_steps + 1:
            self._set_lr_scale(warmup_scale(self.step, self.cfg.warmup_steps))
        logits = self.model(batch)
        loss = training_loss(logits, batch)
        value = float(loss.detach())
        reason = self.guard.check(value) if self.cfg.guard.enabled else None
        if reason is not None:
            for m in self.model.sparse_modules():
                m.discard_pending()
            raise self._diverged(reason)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.model.apply_sparse_gradients()
        self.step += 1
        now = time.time() if self.cfg.tables.eviction.ttl_seconds else None
        for t in self.tables.values():
            t.advance(step=self.step, now=now)
        ev = self.cfg.tables.eviction
        if (ev.ttl_steps or ev.ttl_seconds) and self.step % ev.every_steps == 0:
            for t in self.tables.values():
                t.evict()
        return value

    def _diverged(self, reason: str) -> TrainingDiverged:
        c = self.cfg
        ckpt = self.latest_checkpoint()
        where = (f"the last good checkpoint, {ckpt}, stays (change a setting and rerun the "
                 "same command to resume from it)" if ckpt is not None else
                 "no checkpoint was written before it")
        msg = (f"training diverged at step {self.step + 1}: {reason}. Lower "
               f"tables.optimizer.lr (now {c.tables.optimizer.lr:g}) or dense_optimizer.lr "
               f"(now {c.dense_optimizer.lr:g}), or raise warmup_steps (now {c.warmup_steps});"
               f" {where}")
        return TrainingDiverged(msg, self.step + 1, ckpt)

    @torch.no_grad()
    def predict(self, batch: Batch) -> np.ndarray:
        """Click probabilities ``(B,)`` float32; reads tables without changing them."""
        self.model.eval()
        return torch.sigmoid(self.model(batch)).numpy().astype(np.float32)

    def evaluate(self, paths: list[str]) -> dict[str, float]:
        """Test AUC, log loss, sample count and prediction throughput on ``paths``."""
        reader = ParquetReader(
            paths, self.cfg.schema, self.cfg.eval_batch_size or max(self.cfg.batch_size, 4096),
            prefetch=self.cfg.data.prefetch,
        )
        t0 = time.perf_counter()
        ys, ps = [], []
        ids: dict[str, list[np.ndarray]] = {k: [] for k in self.cfg.schema.categorical_names}
        reader.normalizer = self.normalizer
        for b in reader.iter_epoch(0):
            ps.append(self.predict(b))
            ys.append(b.labels)
            for k, seg in b.sparse.to_dict().items():
                ids[k].append(np.unique(seg.values))
        secs = time.perf_counter() - t0
        y = np.concatenate(ys) if ys else np.empty(0, np.float32)
        p = np.concatenate(ps) if ps else np.empty(0, np.float32)
        return {
            "auc": auc(y, p),
            "logloss": logloss(y, p),
            "calibration": calibration_by_decile(y, p),
            "test_distinct_ids": {k: int(np.unique(np.concatenate(v)).size) if v else 0
                                  for k, v in ids.items()},
            "test_samples": int(y.shape[0]),
            "eval_samples_per_s": y.shape[0] / secs if secs > 0 else 0.0,
        }

    def train_reader(self) -> ParquetReader:
        """The train split's reader as :meth:`fit` uses it (learned transforms applied)."""
        cfg = self.cfg
        return ParquetReader(
            self.train_files, cfg.schema, cfg.batch_size, prefetch=cfg.data.prefetch,
            shuffle_row_groups=cfg.data.shuffle_row_groups, seed=cfg.seed,
            normalizer=self.normalizer,
        )

    # ---- loop ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask :meth:`fit` to checkpoint after the current step and raise
        :class:`TrainingInterrupted` (safe to call from a signal handler)."""
        self._stop = True

    def fit(self) -> dict[str, Any]:
        """Train (resuming if a checkpoint exists), evaluate, export; return the results."""
        cfg = self.cfg
        if cfg.checkpoint.resume:
            self.maybe_resume()
        reader = self.train_reader()
        total_steps = cfg.epochs * len(reader)
        progress = _Progress(total_steps, self.step, enabled=cfg.progress)
        every = cfg.checkpoint.every_steps
        delta_every = cfg.export.delta_every_steps
        loss_ema = None
        try:
            while self.epoch < cfg.epochs:
                t0 = time.perf_counter()
                for batch in reader.iter_epoch(self.epoch, start=self.position):
                    loss = self.train_step(batch)
                    self.position = reader.position
                    self.samples_seen += batch.size
                    loss_ema = loss if loss_ema is None else 0.98 * loss_ema + 0.02 * loss
                    self.loss_curve.append((self.step, loss_ema))
                    progress.update(self.step, loss_ema)
                    if delta_every and self.step % delta_every == 0:
                        self.export_delta()
                    if every and self.step % every == 0:
                        self.train_seconds += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        self.save_checkpoint()
                    if self._stop:
                        self.train_seconds += time.perf_counter() - t0
                        raise TrainingInterrupted(self.save_checkpoint(), self.step)
                    if self.step % cfg.log_every_steps == 0 and not progress.enabled:
                        self.log(f"step {self.step}/{total_steps} loss {loss_ema:.4f}")
                self.train_seconds += time.perf_counter() - t0
                self.epoch += 1
                self.position = 0
        finally:
            progress.close()
        if every:
            self.save_checkpoint()
        result: dict[str, Any] = {
            "model": cfg.model,
            "steps": self.step,
            "train_samples": self.samples_seen,
            "samples_per_s": self.samples_seen / self.train_seconds if self.train_seconds else 0.0,
            "resumed_from_step": self.resumed_from,
            "table_rows": {n: len(t) for n, t in self.tables.items()},
            "table_bytes": {n: int(t.memory_bytes()) for n, t in self.tables.items()},
            "base_rate": self.base_rate,
            "numeric_transforms": self.normalizer.describe(),
            "loss_curve": _thin(self.loss_curve, 200),
        }
        test = cfg.data_paths("test")
        if test:
            result.update(self.evaluate(test))
        else:
            result.update({"auc": None, "logloss": None})
        result["fields"] = self._field_tables(result.pop("test_distinct_ids", {}))
        if cfg.export.package:
            pkg = export_package(self, cfg.output_path / "model", metrics=result)
            result["package"] = str(pkg)
        return result

    def _field_tables(self, distinct: dict[str, int]) -> list[dict[str, Any]]:
        """Per field: the table its embeddings live in and that table's rows (a shared
        table's rows serve every field), and its distinct ids in the test split."""
        specs = self.features.get("embedding") or self.features.get("linear") or []
        return [{"field": f.key, "table": f.table, "table_rows": len(self.tables[f.table]),
                 "test_distinct_ids": distinct.get(f.key)} for f in specs]

    # ---- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write a checkpoint atomically; return its directory.

        With deltas enabled, a delta is exported first (unless one was at this step): a
        restored table starts with no pending changes, so the delta chain must end exactly
        at the checkpoint for a resumed run's deltas to continue it without a gap.
        """
        if self.cfg.export.delta_every_steps and self._delta_step != self.step:
            self.export_delta()
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        name = f"step-{self.step:08d}"
        final = self.ckpt_dir / name
        if final.exists():
            return final
        tmp = self.ckpt_dir / f".{name}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "samples_seen": self.samples_seen,
            "train_seconds": self.train_seconds,
            "delta_seq": self.delta_seq,
            "normalizer": self.normalizer.to_dict(),
            "base_rate": self.base_rate,
            "config": self.cfg.to_dict(),
            "time": time.time(),
        }
        tables = {n: t.state_dict() for n, t in self.tables.items()}
        _write_file(tmp / "tables.pkl", lambda f: pickle.dump(tables, f, protocol=5))
        dense = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        _write_file(tmp / "dense.pt", lambda f: torch.save(dense, f))
        _write_file(tmp / "state.json", lambda f: f.write(json.dumps(state, default=str).encode()))
        _fsync_dir(tmp)
        os.rename(tmp, final)
        latest_tmp = self.ckpt_dir / f".LATEST.tmp-{os.getpid()}"
        _write_file(latest_tmp, lambda f: f.write(name.encode()))
        os.replace(latest_tmp, self.ckpt_dir / "LATEST")
        _fsync_dir(self.ckpt_dir)
        self._prune_checkpoints(keep=self.cfg.checkpoint.keep)
        return final

    def _prune_checkpoints(self, keep: int) -> None:
        done = sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir())
        for p in done[:-keep]:
            shutil.rmtree(p, ignore_errors=True)

    def latest_checkpoint(self) -> Path | None:
        latest = self.ckpt_dir / "LATEST"
        if not latest.exists():
            return None
        p = self.ckpt_dir / latest.read_text().strip()
        return p if p.is_dir() else None

    def maybe_resume(self) -> bool:
        """Load the newest checkpoint if there is one; return whether one was loaded."""
        p = self.latest_checkpoint()
        if p is None:
            return False
        self.load_checkpoint(p)
        self.resumed_from = self.step
        self.log(f"resumed from checkpoint {p} (step {self.step}, epoch {self.epoch}, "
                 f"sample {self.position})")
        return True

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore tables (with optimizer state), dense weights and optimizer, position."""
        path = Path(path)
        state = json.loads((path / "state.json").read_text())
        self._check_checkpoint(path, state)
        with open(path / "tables.pkl", "rb") as f:
            tables = pickle.load(f)
        if set(tables) != set(self.tables):
            raise ConfigError(
                f"checkpoint {path} holds tables {sorted(tables)} but the config makes "
                f"{sorted(self.tables)}; keep tables.sharing as it was or use a new output_dir"
            )
        for name, sd in tables.items():
            self.tables[name] = EmbeddingTable.from_state_dict(sd)
        self._rebind_tables()
        dense = torch.load(path / "dense.pt", weights_only=False)
        self.model.load_state_dict(dense["model"])
        self.optimizer.load_state_dict(dense["optimizer"])
        torch.set_rng_state(dense["torch_rng"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.samples_seen = int(state["samples_seen"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.delta_seq = int(state.get("delta_seq", 0))
        self._delta_step = self.step
        # The optimizer's saved state holds the learning rate of its time; the config's
        # (perhaps lowered after a divergence) and the warm-up decide it from here.
        self._set_lr_scale(warmup_scale(self.step, self.cfg.warmup_steps))

    def _check_checkpoint(self, path: Path, state: dict[str, Any]) -> None:
        """Refuse a checkpoint whose shapes differ from this config's (it would fail deep
        inside load_state_dict); take its numeric transforms and base rate, the ones its
        weights were trained with. ``state``: its state.json (or a PS manifest)."""
        saved = state.get("config", {})
        mine = self.cfg.to_dict()
        diff = [k for k in _ARCH_KEYS if saved.get(k) != mine.get(k)]
        diff += [f"tables.{k}" for k in _TABLE_KEYS
                 if saved.get("tables", {}).get(k) != mine["tables"].get(k)]
        if diff:
            raise ConfigError(
                f"checkpoint {path} was written with different {', '.join(diff)}; "
                "use a new output_dir, or set checkpoint.resume: false to start over"
            )
        if "normalizer" in state:
            saved_norm = Normalizer.from_dict(state["normalizer"])
            if saved_norm.width != self.normalizer.width:
                raise ConfigError(
                    f"checkpoint {path} was trained with {saved_norm.width} dense inputs "
                    f"({saved_norm.output_names}) but this data gives {self.normalizer.width}; "
                    "use a new output_dir, or set checkpoint.resume: false to start over")
            self.normalizer = saved_norm
            self.base_rate = state.get("base_rate", self.base_rate)

    def _rebind_tables(self) -> None:
        for m in self.model.sparse_modules():
            for name in m.tables:
                m.tables[name] = self.tables[name]

    # ---- export -------------------------------------------------------------------------
    def export_package(self, out: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the model package (see :mod:`plinth.train.package`) to ``out``."""
        return export_package(self, Path(out), metrics=metrics)

    def export_delta(self) -> Path:
        """Write the rows changed since the last delta (and the dense weights)."""
        self.delta_seq += 1
        self._delta_step = self.step
        return export_delta(self, self.cfg.output_path / "deltas", self.delta_seq)


def _thin(points: list[tuple[int, float]], n: int) -> list[tuple[int, float]]:
    """At most about ``n`` evenly spaced points of a curve, the last one kept."""
    if len(points) <= n:
        return list(points)
    every = -(-len(points) // n)
    return points[::every] + ([points[-1]] if (len(points) - 1) % every else [])


class _Progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._p = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._task = self._p.add_task("train", total=total, completed=done, loss="-")
            self._p.start()

    def update(self, step: int, loss: float | None) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=step, loss=f"{loss:.4f}" if loss else "-")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def training_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Binary cross-entropy, averaged over the batch; with sample weights (the schema's
    ``weight`` column) their weighted mean, sum(w * loss) / sum(w): a weight changes a
    sample's share of the step, not the step's size (the learning rate keeps its meaning)."""
    y = torch.from_numpy(batch.labels)
    if batch.weights is None:
        return F.binary_cross_entropy_with_logits(logits, y)
    w = torch.from_numpy(batch.weights)
    per_sample = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (per_sample * w).sum() / w.sum().clamp_min(1e-12)
