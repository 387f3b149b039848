"""A small trained model for the serving tests (built once per session): two versions,
ten deltas continuing the second, 1,000 test records (some with ids never seen), and a
running ``python -m plinth.serve`` per test that needs one."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from _waiting import wait_for

from plinth.data.reader import ParquetReader
from plinth.data.synthetic import SyntheticSpec, generate
from plinth.train.config import load_config
from plinth.train.trainer import Trainer


@dataclass(frozen=True)
class Trained:
    v1: Path
    v2: Path
    deltas: list[Path]  # continue v2, in order
    records: list[dict]  # 1,000 rows without the label; every 5th with unseen ids


def _records(data: Path) -> list[dict]:
    rows = pq.read_table(data / "test").to_pylist() + pq.read_table(data / "train").to_pylist()
    out = []
    for i, r in enumerate(rows[:1000]):
        rec = {k: v for k, v in r.items() if k not in ("label", "p_true")}
        if i % 5 == 0:  # ids no training row had: they read the initializer's value
            rec["c1"] = 10**15 + i
            rec["m1"] = [10**15 + i, -(10**15) - i]
        if i % 7 == 0:
            rec.pop("n2")  # a missing numeric: the field's fill
        out.append(rec)
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("serve-model")
    data = root / "data"
    generate(SyntheticSpec(rows=2000, cardinalities=(10, 50, 200, 1000), multi_fields=1,
                           signal=1.5, multi_cardinality=100, numeric=3, interactions=3, seed=7,
                           row_group_size=1000), data)
    cfg = load_config({
        "data": {"train": str(data / "train"), "test": str(data / "test")},
        "schema": str(data / "schema.yaml"), "model": "deepfm", "embedding_dim": 4,
        "hidden": [16], "batch_size": 64, "dense_optimizer": {"lr": 0.01}, "epochs": 1,
        "threads": 1, "output_dir": str(root / "run"), "checkpoint": {"every_steps": None},
        "progress": False,
    })
    tr = Trainer(cfg, log=lambda m: None)
    batches = iter(ParquetReader(cfg.data_paths("train"), cfg.schema, 64).iter_epoch(0))
    for _ in range(5):
        tr.train_step(next(batches))
    v1 = tr.export_package(root / "v1")
    for _ in range(5):
        tr.train_step(next(batches))
    tr.export_delta()  # the deltas below continue v2 exactly
    v2 = tr.export_package(root / "v2")
    deltas = []
    for _ in range(10):
        tr.train_step(next(batches))
        deltas.append(tr.export_delta())
    return Trained(v1, v2, deltas, _records(data))


@dataclass
class Served:
    url: str
    proc: subprocess.Popen
    client: httpx.Client


def start_server(package: Path, tmp: Path, *args: str, env: dict | None = None) -> Served:
    port_file = tmp / f"port-{os.urandom(4).hex()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plinth.serve", str(package), "--name", "ctr",
         "--port-file", str(port_file), *args],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    wait_for(lambda: port_file.exists() or proc.poll() is not None, 60, "the server's port")
    if proc.poll() is not None:
        raise AssertionError(f"the server exited: {proc.stdout.read().decode()}")
    url = f"http://127.0.0.1:{port_file.read_text()}"
    return Served(url, proc, httpx.Client(base_url=url, timeout=60))


def stop_server(s: Served) -> None:
    s.client.close()
    s.proc.terminate()
    try:
        s.proc.wait(20)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        s.proc.wait()
