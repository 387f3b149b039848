"""Issue 15, Done-when 1: parameter-server training on a real multi-node Ray cluster.

The job of tests/integration/test_ps_training_e2e.py (same data, same config: ps x2,
worker x2, one core and 1Gi each) runs under a real ``plinth server`` subprocess with
``executor: {kind: ray, ...}`` on the session's Ray cluster on loopback, plus a
CPU-only node ``t1`` this module adds. The CPU-only nodes are ``head`` and ``t1``, two
cores each (``w1`` is a GPU node: CPU work stays off it), so the four-core gang must
span both nodes.

1. Undisturbed, it reaches the single-process test AUC within 0.005.
2. Mid-training (after the first complete checkpoint, training frozen so the loss
   lands before the end however loaded the machine is), node ``t1`` leaves the
   cluster: its replicas fail with the reason ``lost: node t1 left the Ray cluster``.
   The gang no longer fits the remaining CPU node (2 of 4 cores), so the retry waits
   for capacity; a replacement node ``t2`` joins (what an autoscaler or an operator
   does) and the retry runs on ``head`` and ``t2``, resumes from the latest complete
   checkpoint (step N > 0) and ends within 0.005 of the single-process AUC.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._helpers import ADMIN_TOKEN, FINAL, PY, Api, cancel_all, start_server, wait_for
from .test_ps_training_e2e import (
    AUC_TOLERANCE,
    STEPS,
    _config,
    _final_auc,
    _replica_pids,
    make_data,
    single_process,
)

pytestmark = pytest.mark.slow

#: The CPU-only node this module adds beside ``head`` (and its replacement).
NODE = {"num_cpus": 2, "memory": 2 << 30}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("ps-ray-data"))


@pytest.fixture(scope="module")
def single_process_auc(data: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    return single_process(data, tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="module")
def cluster(ray_cluster) -> Iterator[Any]:
    """The session's cluster with ``t1`` added; every node added here leaves at the end."""
    before = set(ray_cluster.nodes)
    ray_cluster.add_node("t1", **NODE)
    try:
        yield ray_cluster
    finally:
        for name in set(ray_cluster.nodes) - before:
            ray_cluster.remove_node(name)


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("ps-ray")
    config = {
        "executor": cluster.server_executor(root / "agents"),
        "scheduler": {"poll_interval": 0.1},
        "jobs": {"grace": "2s", "retry_backoff": {"initial": 0.5, "factor": 1, "max": 1}},
    }
    s = start_server(root / "home", config)
    admin = Api(s, ADMIN_TOKEN)
    try:
        yield s
    finally:
        try:
            cancel_all(admin)
        finally:
            admin.close()
            s.stop()


def _submit(api: Api, name: str, cfg: dict[str, Any]) -> str:
    role = {"replicas": 2, "resources": {"cpu": 1, "memory": "1Gi"}}
    spec = {
        "name": name, "params": {"config": cfg}, "retries": 2, "max_runtime": "15m",
        "roles": {
            "ps": {**role, "command": [PY, "-m", "plinth.sparse.server"]},
            "worker": {**role, "command": [PY, "-m", "plinth.train.distributed"]},
        },
    }  # fmt: skip
    return api.ok("POST", "/api/v1/jobs", json=spec)["id"]


def _placement(api: Api, jid: str, attempt: int) -> dict[str, str]:
    """``role-replica`` -> node of the attempt's replicas."""
    return {
        f"{r['role']}-{r['replica']}": r["node"]
        for r in api.ok("GET", f"/api/v1/jobs/{jid}/replicas")
        if r["attempt"] == attempt
    }


def _finish(api: Api, jid: str) -> tuple[dict, list[dict]]:
    try:
        job = api.wait_state(jid, FINAL, timeout=900)
    except AssertionError as e:
        raise AssertionError(f"{e}; events: {[x['reason'] for x in api.events(jid)]}") from None
    return job, api.events(jid)


def test_gang_across_nodes_matches_single_process(server, data, tmp_path, single_process_auc):
    api = Api(server, ADMIN_TOKEN)
    out = tmp_path / "run"
    jid = _submit(api, "ps-ray", _config(data, out))
    job, events = _finish(api, jid)
    placed = _placement(api, jid, 0)
    api.close()
    print(f"placed {placed}")
    assert job["state"] == "succeeded" and job["attempt"] == 0, [e["reason"] for e in events]
    assert set(placed.values()) == {"head", "t1"}, placed  # the gang spans both nodes
    got, resumed = _final_auc(out)
    assert resumed is None
    print(f"AUC on Ray {got:.4f}, single-process {single_process_auc:.4f}")
    assert abs(got - single_process_auc) <= AUC_TOLERANCE, (got, single_process_auc)


def test_node_loss_fails_its_replicas_and_the_job_resumes_from_its_checkpoint(
    server, cluster, data, tmp_path, single_process_auc
):
    api = Api(server, ADMIN_TOKEN)
    out = tmp_path / "run"
    jid = _submit(api, "ps-ray-node-loss", _config(data, out))
    latest = out / "checkpoints" / "LATEST"
    workers = wait_for(lambda: (w := _replica_pids(jid, "worker", "plinth.train.distributed"))
                       and len(w) == 2 and w, 300, "both workers to start")  # fmt: skip
    placed = _placement(api, jid, 0)
    assert set(placed.values()) == {"head", "t1"}, placed
    on_t1 = sorted(k for k, node in placed.items() if node == "t1")
    wait_for(latest.exists, 300, "the first complete checkpoint", interval=0.005)
    # Freeze training at once, so that the node leaves mid-training however loaded the
    # machine is; the node takes its replicas with it, the others run into their absence.
    for pid in workers.values():
        os.kill(pid, signal.SIGSTOP)
    try:
        at_loss = int(latest.read_text().removeprefix("step-"))
        cluster.remove_node("t1")
    finally:
        for pid in workers.values():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # it was on t1
    assert 0 < at_loss < STEPS, "the first checkpoint came only at the end"
    wait_for(lambda: any("left the Ray cluster" in (e["reason"] or "") for e in api.events(jid)),
             120, "the node loss to be reported")  # fmt: skip
    # The gang (4 cores) no longer fits head's 2: a replacement node joins.
    cluster.add_node("t2", **NODE)
    job, events = _finish(api, jid)
    reasons = [e["reason"] or "" for e in events]
    assert job["state"] == "succeeded", reasons
    lost = [e for e in events if e["type"] == "replica_exited" and "lost: node t1" in e["reason"]]
    assert lost, reasons
    assert all("left the Ray cluster" in e["reason"] for e in lost)
    assert {e["reason"].split()[1] for e in lost} <= set(on_t1), (on_t1, reasons)
    assert any(e["type"] == "retrying" for e in events), reasons
    retried = _placement(api, jid, job["attempt"])
    print(f"placed {placed}, after the loss {retried}; lost: {[e['reason'] for e in lost]}")
    assert job["attempt"] >= 1 and set(retried.values()) == {"head", "t2"}, retried
    log = api.c.get(f"/api/v1/jobs/{jid}/logs/worker/0?attempt={job['attempt']}").text
    api.close()
    got, resumed = _final_auc(out)
    assert resumed is not None and 0 < at_loss <= resumed < STEPS, (at_loss, resumed)
    assert f"resumed from checkpoint {out / 'checkpoints'}" in log and f"(step {resumed}," in log
    print(f"AUC on Ray after losing t1 at step {at_loss} (resumed from {resumed}): "
          f"{got:.4f}, single-process {single_process_auc:.4f}")  # fmt: skip
    assert abs(got - single_process_auc) <= AUC_TOLERANCE, (got, single_process_auc)
