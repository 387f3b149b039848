"""The built-in sparse-ctr template end to end (issue 11): an admin derives a small
engineering preset from it, a member submits it with 2 PS shards and 2 workers through a
real server, and the job trains, reports live metrics and prints its test AUC.

Skipped while this installation has no distributed trainer (plinth.train.distributed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plinth.cli.local_server import LocalServer
from plinth.data.synthetic import SyntheticSpec, generate
from plinth.services.templates import BUILTIN_DIR

from ._helpers import ADMIN_TOKEN, Api, cancel_all, make_member, start_server

pytest.importorskip("plinth.train.distributed", reason="the distributed trainer is not installed")
pytestmark = pytest.mark.slow

CONFIG = {
    "nodes": [{"name": "n1", "cpu": 8, "memory": "16Gi"}],
    "scheduler": {"poll_interval": 0.1},
    "jobs": {"grace": "2s"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    s = start_server(tmp_path_factory.mktemp("sparse-ctr-home"), CONFIG)
    admin = Api(s, ADMIN_TOKEN)
    try:
        yield s
    finally:
        try:
            cancel_all(admin)
        finally:
            admin.close()
            s.stop()


def small_preset() -> dict[str, Any]:
    """sparse-ctr with an engineering preset sized for a test: small batches, frequent
    checkpoints and metrics."""
    doc = yaml.safe_load((BUILTIN_DIR / "sparse-ctr.yaml").read_text())
    doc["name"] = "sparse-ctr-small"
    doc["presets"]["engineering"].update(
        batch_size=256, checkpoint_every_steps=8, sparse_lr=0.02, dense_lr=0.01,
        distributed={"metrics_every_steps": 2, "request_timeout_s": 60},
    )  # fmt: skip
    return doc


def test_sparse_ctr_trains_through_the_server(server: LocalServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(SyntheticSpec(rows=6000, cardinalities=(10, 100, 1000), multi_fields=0,
                           signal=1.5, numeric=2, interactions=2, seed=5,
                           row_group_size=600), data)  # fmt: skip
    admin = Api(server, ADMIN_TOKEN)
    admin.ok("POST", "/api/v1/templates", json=small_preset())
    member = make_member(admin, server, "ctr-team", "algo",
                         quota={"cpu": 8, "memory": "16Gi"})  # fmt: skip
    job = member.ok("POST", "/api/v1/jobs", json={
        "template": "sparse-ctr-small", "name": "ctr",
        "params": {"model": "deepfm", "data": str(data), "ps": 2, "workers": 2, "epochs": 2,
                   "embedding_dim": 4, "hidden": [16]},
    })  # fmt: skip
    assert job["template"]["version"] == 1
    roles = job["spec"]["roles"]
    assert (roles["ps"]["replicas"], roles["worker"]["replicas"]) == (2, 2)
    assert job["spec"]["params"]["config"]["distributed"]["metrics_every_steps"] == 2
    done = member.wait_state(job["id"], {"succeeded", "failed", "cancelled", "timed_out"}, 600)
    log = member.c.get(f"/api/v1/jobs/{job['id']}/logs/worker/0").text
    assert done["state"] == "succeeded", (done["reason"], log[-3000:])
    result = next(json.loads(line) for line in reversed(log.splitlines())
                  if line.startswith("{"))  # fmt: skip
    assert result["auc"] > 0.6, result
    points = member.ok("GET", f"/api/v1/jobs/{job['id']}/metrics")["points"]
    workers = [p for p in points if p["role"] == "worker"]
    assert any("loss" in p["values"] for p in workers), points[:5]
    assert any("samples_per_s" in p["values"] for p in workers), points[:5]
