"""Done-when 1 and 2 (issue 11): parameter-server training as a real platform job.

A plain job spec with roles ``ps`` x2 (``python -m plinth.sparse.server``) and ``worker``
x2 (``python -m plinth.train.distributed``) on the local executor trains a synthetic set
and reaches the single-process test AUC within 0.005. Killing one PS replica (and, in a
second job, one worker) with SIGKILL mid-training fails the attempt; the job's retry
restarts the gang, which resumes from the latest complete checkpoint, succeeds and ends
within 0.005 AUC of the undisturbed run; the events say what happened.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plinth.data.synthetic import SyntheticSpec, generate
from plinth.train.config import load_config
from plinth.train.trainer import Trainer

from ._helpers import ADMIN_TOKEN, Api, cancel_all, start_server, wait_for

PY = sys.executable
CONFIG = {
    "nodes": [{"name": "n1", "cpu": 8, "memory": "16Gi"}],
    "scheduler": {"poll_interval": 0.1},
    "jobs": {"grace": "2s", "retry_backoff": {"initial": 0.5, "factor": 1, "max": 1}},
}
AUC_TOLERANCE = 0.005
STEPS = 3 * 22  # epochs x steps per epoch: 5400 train rows per worker in batches of 256
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}

pytestmark = pytest.mark.slow


def make_data(out: Path) -> Path:
    """The synthetic set of these tests, written to `out` (also used by the Ray run)."""
    generate(SyntheticSpec(rows=12000, cardinalities=(10, 100, 1000), multi_fields=0,
                           signal=1.5, numeric=2, interactions=2, seed=5,
                           row_group_size=600), out)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("ps-e2e-data"))


def single_process(data: Path, out: Path) -> float:
    """The test AUC of the same training in one process (no ``distributed``)."""
    cfg = dict(_config(data, out))
    cfg.pop("distributed")
    return float(Trainer(load_config(cfg), log=lambda m: None).fit()["auc"])


def _config(data: Path, out: Path) -> dict[str, Any]:
    return {
        "data": {"train": str(data / "train"), "test": str(data / "test")},
        "schema": str(data / "schema.yaml"), "model": "deepfm", "embedding_dim": 4,
        "hidden": [16], "batch_size": 256, "epochs": 3, "threads": 1, "seed": 1,
        "dense_optimizer": {"lr": 0.01}, "tables": {"optimizer": {"kind": "adagrad", "lr": 0.02}},
        "output_dir": str(out), "checkpoint": {"every_steps": 8}, "progress": False,
        "log_every_steps": 10, "distributed": {"staleness": 2, "request_timeout_s": 60},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = start_server(tmp_path_factory.mktemp("ps-e2e-home"), CONFIG)
    admin = Api(s, ADMIN_TOKEN)
    try:
        yield s
    finally:
        try:
            cancel_all(admin)
        finally:
            admin.close()
            s.stop()


@pytest.fixture(scope="module")
def single_process_auc(data: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    return single_process(data, tmp_path_factory.mktemp("single"))


def _submit(api: Api, name: str, cfg: dict[str, Any]) -> str:
    role = {"replicas": 2, "resources": {"cpu": 1, "memory": "1Gi"}}
    spec = {
        "name": name, "params": {"config": cfg}, "retries": 2, "max_runtime": "15m",
        "roles": {
            "ps": {**role, "command": [PY, "-m", "plinth.sparse.server"]},
            "worker": {**role, "command": [PY, "-m", "plinth.train.distributed"]},
        },
    }
    return api.ok("POST", "/api/v1/jobs", json=spec)["id"]


def _final_auc(out: Path) -> tuple[float, Any]:
    meta = json.loads((out / "model" / "model.json").read_text())["metadata"]
    return float(meta["metrics"]["auc"]), meta["metrics"].get("resumed_from_step")


def _replica_pids(job_id: str, role: str, module: str) -> dict[int, int]:
    """Replica -> pid of the replica's own process (not its supervisor), through /proc."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            # `python -m module`; not its supervisor, whose argv ends with the command.
            if argv[1:3] != [b"-m", module.encode()]:
                continue
            env = dict(kv.split(b"=", 1) for kv in (d / "environ").read_bytes().split(b"\0")
                       if b"=" in kv)
        except OSError:
            continue
        if env.get(b"PLINTH_WORKLOAD_ID") == job_id.encode() and \
                env.get(b"PLINTH_ROLE") == role.encode():
            found[int(env[b"PLINTH_REPLICA"])] = int(d.name)
    return found


@pytest.fixture(scope="module")
def undisturbed(server, data, tmp_path_factory) -> dict[str, Any]:
    api = Api(server, ADMIN_TOKEN)
    out = tmp_path_factory.mktemp("undisturbed")
    jid = _submit(api, "ps-undisturbed", _config(data, out))
    job = api.wait_state(jid, FINAL, timeout=600)
    events = api.events(jid)
    api.close()
    auc, resumed = _final_auc(out) if job["state"] == "succeeded" else (None, None)
    return {"job": job, "events": events, "out": out, "auc": auc, "resumed": resumed}


def test_two_ps_two_workers_match_single_process(undisturbed, single_process_auc):
    assert undisturbed["job"]["state"] == "succeeded", undisturbed["events"]
    assert undisturbed["resumed"] is None
    got = undisturbed["auc"]
    assert abs(got - single_process_auc) <= AUC_TOLERANCE, (got, single_process_auc)
    ckpts = undisturbed["out"] / "checkpoints"
    manifest = json.loads((ckpts / (ckpts / "LATEST").read_text() / "manifest.json").read_text())
    assert manifest["shards"] == 2 and manifest["world_size"] == 2
    assert manifest["step"] == STEPS
    assert [w["rank"] for w in manifest["workers"]] == [0, 1]


@pytest.mark.parametrize(("role", "module"), [("ps", "plinth.sparse.server"),
                                              ("worker", "plinth.train.distributed")])
def test_kill_9_mid_training_resumes_from_the_latest_checkpoint(
        server, data, tmp_path, undisturbed, role, module):
    api = Api(server, ADMIN_TOKEN)
    out = tmp_path / "run"
    jid = _submit(api, f"ps-kill-{role}", _config(data, out))
    latest = out / "checkpoints" / "LATEST"
    workers = wait_for(lambda: (w := _replica_pids(jid, "worker", "plinth.train.distributed"))
                       and len(w) == 2 and w, 300, "both workers to start")
    victim = workers[1] if role == "worker" else wait_for(
        lambda: _replica_pids(jid, "ps", module).get(1), 300, "ps-1 to start")
    wait_for(latest.exists, 300, "the first complete checkpoint", interval=0.005)
    # Freeze training at once, so that the kill lands mid-training however loaded the
    # machine is; then kill -9 the victim and let the others run into its absence.
    for pid in workers.values():
        os.kill(pid, signal.SIGSTOP)
    try:
        at_kill = int(latest.read_text().removeprefix("step-"))
        os.kill(victim, signal.SIGKILL)
    finally:
        for pid in workers.values():
            if pid != victim:
                os.kill(pid, signal.SIGCONT)
    assert at_kill < STEPS, "the first checkpoint came only at the end"
    job = api.wait_state(jid, FINAL, timeout=600)
    events = api.events(jid)
    api.close()
    reasons = [e["reason"] for e in events]
    assert job["state"] == "succeeded", reasons
    assert any(e["type"] == "replica_exited" and e["reason"].startswith(f"replica {role}-1 ")
               and "killed by signal 9" in e["reason"] for e in events), reasons
    assert any(e["type"] == "retrying" and "retry 1/2" in e["reason"] for e in events), reasons
    got, resumed = _final_auc(out)
    assert resumed is not None and at_kill <= resumed < STEPS, (at_kill, resumed)
    assert undisturbed["auc"] is not None
    assert abs(got - undisturbed["auc"]) <= AUC_TOLERANCE, (got, undisturbed["auc"])
