"""``python -m plinth.train.distributed``: a worker of parameter-server training.

The same :class:`~plinth.train.trainer.Trainer` as ``plinth train local``, with its tables
replaced by :class:`~plinth.sparse.ps.client.RemoteTable` s on the shards (``ps`` role)
and its dense gradients averaged over the workers (``worker`` role) with
``torch.distributed`` (gloo). What differs is configuration: the training config's
``distributed:`` section and the platform's environment (:class:`Cluster`).

One step on every worker::

    send the pull of the NEXT batch's rows (prefetch; overlaps this step)
    forward (rows of this batch, prefetched one step ago) -> loss -> backward
    all-reduce the dense gradients (+ 2 flags: stop requested, checkpoint due)
    dense optimizer step; push the sparse row gradients (asynchronous, at most
    `distributed.staleness` pushes in flight)

Sparse updates are therefore asynchronous: a row read for batch t+1 may miss this
worker's push of batch t and other workers' recent pushes (bounded by the staleness).
Data: each worker reads its share of the row groups (:mod:`plinth.train.data_split`).

Coordinated checkpoints (every ``checkpoint.every_steps`` steps and/or
``distributed.checkpoint_every_minutes``, and at the end)::

    <output_dir>/checkpoints/LATEST                "step-00000120"
    <output_dir>/checkpoints/step-00000120/
        shard-0000-of-0002.pkl ...   each shard's tables ({name: state_dict})
        dense.pt                     model + dense optimizer state (identical on workers)
        manifest.json                step, epoch, steps into the epoch, every worker's
                                     reader position, world size, shards, config

Every worker first collects its prefetch and waits for its pushes, then all meet
(gather of positions); worker 0 has every shard write its file into a temporary
directory, writes the dense weights and the manifest, fsyncs, renames the directory into
place and only then replaces ``LATEST``; a second barrier keeps pushes out until the
shards are done. A directory without the rename is ignored (and removed by the next
checkpoint): a checkpoint is complete or absent. A restarted gang resumes from
``LATEST``: worker 0 has the shards restore it — onto any number of shards, rows resharded
with their optimizer state and counters — and every worker takes its reader position
(with another number of workers: the same number of steps into the epoch).

At the end worker 0 writes the final checkpoint, tells the shards to shut down (they exit
0), merges the shards' rows into local tables, evaluates the test split, writes the
model package, and prints the result as one JSON line on stdout (as ``plinth train
local --json``). Exit codes: 0 done, 2 bad config or data, 1 any other failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

from plinth.data.metrics import auc
from plinth.data.reader import DataError
from plinth.sparse.jagged import Batch
from plinth.sparse.ps.client import PSClient, RemoteTable
from plinth.sparse.ps.protocol import PSError
from plinth.sparse.ps.shard import Shard
from plinth.train.config import ConfigError, TrainConfig, load_config
from plinth.train.data_split import WorkerReader
from plinth.train.distributed_config import DistributedConfig
from plinth.train.package import FORMAT as PACKAGE_FORMAT
from plinth.train.package import _publish, _save_npz, _save_torch, export_package
from plinth.train.reporting import MetricsReporter
from plinth.train.stability import warmup_scale
from plinth.train.trainer import (
    Trainer,
    TrainingInterrupted,
    _fsync_dir,
    _write_file,
    build_table_configs,
    training_loss,
)

__all__ = ["Cluster", "DistributedTrainer", "main"]


@dataclass(frozen=True)
class Cluster:
    """Who is who: shard addresses (shard order), this worker's rank, the world size and
    the torch.distributed rendezvous."""

    ps: tuple[str, ...]
    rank: int = 0
    world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Cluster:
        """From ``PLINTH_ROLES`` (its ``ps`` list) and ``RANK``/``WORLD_SIZE``/
        ``MASTER_ADDR``/``MASTER_PORT``; raises :class:`ConfigError` naming what lacks."""
        env = dict(os.environ if env is None else env)
        ps = _env_json(env, "PLINTH_ROLES").get("ps")
        if not ps:
            raise ConfigError("no parameter-server shards: PLINTH_ROLES has no 'ps' role; "
                              "give the job a ps role running python -m plinth.sparse.server")
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", env.get("PLINTH_REPLICA", "0")))
        if world > 1 and not env.get("MASTER_PORT"):
            raise ConfigError("WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT")
        return cls(tuple(ps), rank, world, env.get("MASTER_ADDR", "127.0.0.1"),
                   int(env.get("MASTER_PORT", "0")))


class DistributedTrainer(Trainer):
    """A worker: :class:`Trainer` over remote tables with data-parallel dense training."""

    def __init__(self, cfg: TrainConfig, cluster: Cluster, *,
                 log: Any = None, reporter: MetricsReporter | None = None) -> None:
        self.cluster = cluster
        self.dist = cfg.distributed or DistributedConfig()
        self.client = PSClient(list(cluster.ps), timeout_s=self.dist.request_timeout_s,
                               max_pushes_in_flight=self.dist.staleness,
                               max_message_bytes=int(self.dist.max_message_mb * (1 << 20)))
        configs, _ = build_table_configs(cfg)
        remote = {n: RemoteTable(self.client, tc) for n, tc in configs.items()}
        super().__init__(cfg, log=log, tables=remote)
        self.reporter = reporter or MetricsReporter(None, None, None)
        self.epoch_step = 0  # steps taken in self.epoch
        self._ckpt_due = False
        self._last_ckpt = time.monotonic()
        self._window: deque[tuple[np.ndarray, np.ndarray]] = deque(
            maxlen=self.dist.auc_window_batches)
        self._rate = (time.perf_counter(), 0)  # (time, samples) at the last report

    # ---- collectives --------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.cluster.rank

    @property
    def world(self) -> int:
        return self.cluster.world_size

    def _init_process_group(self) -> None:
        if self.world == 1 or tdist.is_initialized():
            return
        addr, port = self.cluster.master_addr, self.cluster.master_port
        if addr in ("127.0.0.1", "localhost"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        timeout = timedelta(seconds=self.dist.collective_timeout_s)
        store = rendezvous_store(addr, port, self.world, self.rank, timeout)
        tdist.init_process_group("gloo", store=store, rank=self.rank,
                                 world_size=self.world, timeout=timeout)

    def _barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()

    def _gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def _allreduce_dense(self, flags: list[float]) -> list[float]:
        """Average the dense gradients over the workers (one flat all-reduce), summing
        ``flags`` along; returns the summed flags."""
        if self.world == 1:
            return flags
        params = [p for p in self.model.parameters() if p.requires_grad]
        flat = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
        ] + [torch.tensor(flags, dtype=torch.float32)])
        tdist.all_reduce(flat)
        out = flat[len(flat) - len(flags):].tolist()
        flat = flat[: len(flat) - len(flags)] / self.world
        pos = 0
        for p in params:
            n = p.numel()
            p.grad = flat[pos:pos + n].view_as(p).clone()
            pos += n
        return out

    # ---- one step -----------------------------------------------------------------------
    def _prefetch(self, batch: Batch) -> None:
        """Send the pulls of ``batch``'s rows: exactly the ids the model's forward will
        ask each table for, so its pull collects them."""
        for m in self.model.sparse_modules():
            for table_name, ids in m.unique_ids(batch.sparse).items():
                m.tables[table_name].prefetch(ids)

    def train_step(self, batch: Batch) -> float:
        """One synchronous dense / asynchronous sparse step; returns the mean loss."""
        self.model.train()
        if self.step < self.cfg.warmup_steps + 1:
            self._set_lr_scale(warmup_scale(self.step, self.cfg.warmup_steps))
        logits = self.model(batch)
        loss = training_loss(logits, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        due = self._checkpoint_due_by_time()
        stop, ckpt = self._allreduce_dense([1.0 if self._stop else 0.0, 1.0 if due else 0.0])
        self.optimizer.step()
        self.step += 1
        for t in self.tables.values():
            t.advance(step=self.step)
        self.model.apply_sparse_gradients()
        ev = self.cfg.tables.eviction
        if (ev.ttl_steps or ev.ttl_seconds) and self.step % ev.every_steps == 0 and self.rank == 0:
            self.client.evict()
        self._stop = stop > 0
        self._ckpt_due = ckpt > 0
        with torch.no_grad():
            self._window.append((batch.labels, torch.sigmoid(logits.detach()).numpy()))
        return float(loss.detach())

    def _checkpoint_due_by_time(self) -> bool:
        minutes = self.dist.checkpoint_every_minutes
        return (self.rank == 0 and minutes is not None
                and time.monotonic() - self._last_ckpt >= 60.0 * minutes)

    # ---- the loop -----------------------------------------------------------------------
    def connect(self) -> None:
        """Join the gang: process group, handshake with every shard, then restore the
        latest complete checkpoint (worker 0 tells the shards) or start empty."""
        self._init_process_group()
        configs, _ = build_table_configs(self.cfg)
        self.client.hello(configs)
        self._barrier()
        if self.cfg.checkpoint.resume:
            self.maybe_resume()
        self._barrier()

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.connect()
        reader = WorkerReader(
            cfg.data_paths("train"), cfg.schema, cfg.batch_size, rank=self.rank,
            world_size=self.world, seed=cfg.seed, prefetch=cfg.data.prefetch,
            shuffle_row_groups=cfg.data.shuffle_row_groups, normalizer=self.normalizer,
        )
        steps = reader.steps_per_epoch
        every = cfg.checkpoint.every_steps
        delta_every = cfg.export.delta_every_steps
        loss_ema: float | None = None
        t0 = time.perf_counter()
        while self.epoch < cfg.epochs:
            batches = reader.iter_epoch(self.epoch, start=min(self.position, reader.num_rows))
            nxt = next(batches, None) if self.epoch_step < steps else None
            if nxt is not None and self.dist.prefetch:
                self._prefetch(nxt)
            while nxt is not None:
                batch = nxt
                nxt = next(batches, None) if self.epoch_step + 1 < steps else None
                if nxt is not None and self.dist.prefetch:
                    self._prefetch(nxt)
                loss = self.train_step(batch)
                self.position += batch.size
                self.epoch_step += 1
                self.samples_seen += batch.size
                loss_ema = loss if loss_ema is None else 0.98 * loss_ema + 0.02 * loss
                if delta_every and self.step % delta_every == 0:
                    self.export_delta()
                if self.step % self.dist.metrics_every_steps == 0:
                    self._report(loss_ema)
                if self.step % cfg.log_every_steps == 0:
                    self.log(f"worker {self.rank}: step {self.step} (epoch {self.epoch}, "
                             f"{self.epoch_step}/{steps}) loss {loss_ema:.4f}")
                if self._stop or self._ckpt_due or (every and self.step % every == 0):
                    self.train_seconds += time.perf_counter() - t0
                    path = self.save_checkpoint()
                    t0 = time.perf_counter()
                    if self._stop:
                        raise TrainingInterrupted(path, self.step)
            batches.close()
            self.epoch += 1
            self.position = 0
            self.epoch_step = 0
        self.train_seconds += time.perf_counter() - t0
        final = self.save_checkpoint()
        if loss_ema is not None:
            self._report(loss_ema)
        return self._finish(final)

    def _report(self, loss: float) -> None:
        now = time.perf_counter()
        t_prev, n_prev = self._rate
        self._rate = (now, self.samples_seen)
        values = {"loss": loss, "epoch": float(self.epoch)}
        if now > t_prev and self.samples_seen > n_prev:
            values["samples_per_s"] = (self.samples_seen - n_prev) / (now - t_prev)
        if self._window:
            y = np.concatenate([w[0] for w in self._window])
            p = np.concatenate([w[1] for w in self._window])
            a = auc(y, p)
            if a is not None:
                values["auc"] = float(a)
        self.reporter.report("worker", self.rank, self.step, values)

    def _finish(self, final: Path) -> dict[str, Any]:
        """Worker 0: shut the shards down, evaluate and package from the final checkpoint.
        Other workers only wait for worker 0's checkpoint and return their own counts."""
        self._barrier()
        result: dict[str, Any] = {
            "model": self.cfg.model, "steps": self.step, "rank": self.rank,
            "world_size": self.world, "shards": self.client.num_shards,
            "train_samples": self.samples_seen,
            "samples_per_s": self.samples_seen / self.train_seconds if self.train_seconds else 0.0,
            "resumed_from_step": self.resumed_from, "checkpoint": str(final),
        }
        if self.rank != 0:
            return result
        self.client.shutdown()
        local = Shard(0, 1)
        local.restore(final)
        self.tables = dict(local.tables)
        self._rebind_tables()
        result["table_rows"] = {n: len(t) for n, t in self.tables.items()}
        result["table_bytes"] = {n: int(t.memory_bytes()) for n, t in self.tables.items()}
        test = self.cfg.data_paths("test")
        result.update(self.evaluate(test) if test else {"auc": None, "logloss": None})
        if self.cfg.export.package:
            result["package"] = str(export_package(self, self.cfg.output_path / "model",
                                                   metrics=result))
        return result

    # ---- coordinated checkpoints --------------------------------------------------------
    def _settle(self) -> None:
        """Collect this worker's prefetched pulls and wait for its pushes: afterwards every
        request it sent has been applied by the shards."""
        for t in self.tables.values():
            if isinstance(t, RemoteTable):
                t.settle()
        self.client.drain()

    def save_checkpoint(self) -> Path:
        """Write a coordinated checkpoint (all workers call this at the same step); return
        its directory. See the module docstring for the protocol."""
        if self.cfg.export.delta_every_steps and self._delta_step != self.step:
            # The delta chain ends exactly at each checkpoint (a restored shard starts
            # with nothing to export), as in plinth.train.trainer.
            self.export_delta()
        self._settle()
        me = {"rank": self.rank, "position": self.position, "samples_seen": self.samples_seen,
              "train_seconds": self.train_seconds}
        workers = self._gather(me)  # also the barrier: every worker has settled
        name = f"step-{self.step:08d}"
        final = self.ckpt_dir / name
        if self.rank == 0 and not final.exists():
            self._write_checkpoint(final, workers)
        self._barrier()  # no push before the shards have written their files
        self._last_ckpt = time.monotonic()
        self._ckpt_due = False
        return final

    def _write_checkpoint(self, final: Path, workers: list[dict[str, Any]]) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.ckpt_dir.glob(".step-*"):  # left by a crash mid-checkpoint
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.ckpt_dir / f".{final.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        files = self.client.save(str(tmp))
        dense = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        _write_file(tmp / "dense.pt", lambda f: torch.save(dense, f))
        manifest = {
            "format": "plinth.ps-checkpoint/v1", "step": self.step, "epoch": self.epoch,
            "epoch_step": self.epoch_step, "world_size": self.world,
            "shards": self.client.num_shards, "shard_files": files,
            "workers": sorted(workers, key=lambda w: w["rank"]),
            "delta_seq": self.delta_seq, "config": self.cfg.to_dict(), "time": time.time(),
            "normalizer": self.normalizer.to_dict(), "base_rate": self.base_rate,
        }
        _write_file(tmp / "manifest.json",
                    lambda f: f.write(json.dumps(manifest, default=str).encode()))
        _fsync_dir(tmp)
        os.rename(tmp, final)
        latest_tmp = self.ckpt_dir / f".LATEST.tmp-{os.getpid()}"
        _write_file(latest_tmp, lambda f: f.write(final.name.encode()))
        os.replace(latest_tmp, self.ckpt_dir / "LATEST")
        _fsync_dir(self.ckpt_dir)
        self._prune_checkpoints(keep=self.cfg.checkpoint.keep)
        self.log(f"checkpoint {final.name}: {len(files)} shard(s), {self.world} worker(s)")

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore from a coordinated checkpoint: worker 0 has the shards load (and
        reshard) the tables; every worker loads the dense state and its position."""
        path = Path(path)
        manifest = json.loads((path / "manifest.json").read_text())
        self._check_checkpoint(path, manifest)
        if self.rank == 0:
            self.client.restore(str(path))
        dense = torch.load(path / "dense.pt", weights_only=False)
        self.model.load_state_dict(dense["model"])
        self.optimizer.load_state_dict(dense["optimizer"])
        torch.set_rng_state(dense["torch_rng"])
        self.step = int(manifest["step"])
        self.epoch = int(manifest["epoch"])
        self.epoch_step = int(manifest["epoch_step"])
        self.delta_seq = int(manifest.get("delta_seq", 0))
        self._delta_step = self.step
        workers = manifest["workers"]
        if int(manifest["world_size"]) == self.world:
            mine = workers[self.rank]
            self.position = int(mine["position"])
            self.samples_seen = int(mine["samples_seen"])
            self.train_seconds = float(mine["train_seconds"])
        else:  # another number of workers: the same number of steps into the epoch
            self.position = self.epoch_step * self.cfg.batch_size
            self.samples_seen = self.step * self.cfg.batch_size
        for t in self.tables.values():
            t.advance(step=self.step)
        self._set_lr_scale(warmup_scale(self.step, self.cfg.warmup_steps))

    def export_delta(self) -> Path:
        """Write the rows changed since the previous delta, in the package's delta format
        (:mod:`plinth.train.package`), as ``<output_dir>/deltas/delta-NNNNNN``. Every
        worker calls this at the same step: all settle and meet, worker 0 has each shard
        write its changed rows, merges them per table, adds the dense weights and
        publishes the directory atomically."""
        self._settle()
        self._barrier()
        self.delta_seq += 1
        self._delta_step = self.step
        root = self.cfg.output_path / "deltas"
        final = root / f"delta-{self.delta_seq:06d}"
        if self.rank == 0:
            tmp = root / f".{final.name}.tmp-{os.getpid()}"
            if tmp.exists():
                shutil.rmtree(tmp)
            (tmp / "tables").mkdir(parents=True)
            self.client.export_delta(str(tmp))
            counts = {}
            for name in self.table_configs:
                parts = sorted((tmp / "tables").glob(f"{name}.shard-*.npz"))
                loaded = [dict(np.load(p)) for p in parts]
                merged = {k: np.concatenate([d[k] for d in loaded])
                          for k in ("ids", "values", "evicted_ids")}
                _save_npz(tmp / "tables" / f"{name}.npz", merged)
                for p in parts:
                    p.unlink()
                counts[name] = {"rows": int(merged["ids"].shape[0]),
                                "evicted": int(merged["evicted_ids"].shape[0])}
            _save_torch(tmp / "dense.pt", self.model.state_dict())
            (tmp / "delta.json").write_text(json.dumps(
                {"format": PACKAGE_FORMAT, "seq": self.delta_seq, "step": self.step,
                 "tables": counts, "created_at": time.time()}, indent=2) + "\n")
            _publish(tmp, final)
        self._barrier()
        return final

    def close(self) -> None:
        self.client.close()
        self.reporter.close()
        if self.world > 1 and tdist.is_initialized():
            tdist.destroy_process_group()


def rendezvous_store(addr: str, port: int, world: int, rank: int,
                     timeout: timedelta) -> tdist.TCPStore:
    """The gang's rendezvous store at `addr`:`port`, hosted by rank 0.

    torch's own (a ``tcp://`` init_method) listens on every interface of worker 0's
    node; this one listens on MASTER_ADDR only, through a socket it is handed (and
    then owns: the store closes it)."""
    fd = _listen(addr, port).detach() if rank == 0 else None
    return tdist.TCPStore(addr, port, world, rank == 0, timeout, master_listen_fd=fd)


def _listen(addr: str, port: int) -> socket.socket:
    """A TCP socket listening on `addr`:`port` only (IPv4 or IPv6, as `addr` resolves)."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(sockaddr)
    sock.listen(128)
    return sock


def _env_json(env: dict[str, str], name: str) -> dict[str, Any]:
    """A JSON object from the platform's environment ({} when unset)."""
    try:
        value = json.loads(env.get(name) or "{}")
    except ValueError:
        raise ConfigError(f"{name} is not valid JSON; the platform sets it") from None
    return value if isinstance(value, dict) else {}


def load_params_config(env: dict[str, str] | None = None) -> TrainConfig:
    """The training config from ``PLINTH_PARAMS`` (JSON) key ``config``; relative paths
    are relative to the working directory (the job's code directory)."""
    raw = _env_json(dict(os.environ if env is None else env), "PLINTH_PARAMS").get("config")
    if isinstance(raw, str):
        return load_config(raw)
    if not isinstance(raw, dict):
        raise ConfigError("PLINTH_PARAMS has no 'config' mapping: give the job "
                          "params: {config: {...training config...}} (or a config file path)")
    return load_config(raw, base_dir=os.getcwd())


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker replica (see the module docstring)."""
    del argv
    try:
        cfg = load_params_config()
        cluster = Cluster.from_env()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reporter = MetricsReporter.from_env()
    trainer = DistributedTrainer(cfg, cluster, reporter=reporter)
    signal.signal(signal.SIGTERM, lambda *_: trainer.request_stop())
    try:
        result = trainer.fit()
    except TrainingInterrupted as e:
        print(f"worker {cluster.rank}: {e}", file=sys.stderr)
        return 143
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PSError as e:
        print(f"error: parameter server: {e}", file=sys.stderr)
        return 1
    finally:
        trainer.close()
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
