"""A deployment outlives a restart of the server: its replicas keep running and are
re-adopted (not started again), its endpoint answers on the new server, and a replica
killed after the restart is still brought back."""

from __future__ import annotations

import os
import signal

import pytest
from _waiting import wait_for
from integration._helpers import ADMIN_TOKEN, Api, make_member, start_server

from serve.test_deployments import CONFIG, _register, _serve_pid

pytestmark = pytest.mark.slow


def test_deployment_survives_a_server_restart(tmp_path, trained):
    home = tmp_path / "home"
    server = start_server(home, CONFIG)
    try:
        admin = Api(server, ADMIN_TOKEN)
        api = make_member(admin, server, "recs", "ann", quota={"cpu": 2, "memory": "4Gi"})
        _register(api, "ctr", trained.v1)
        d = api.ok("POST", "/api/v1/deployments", json={
            "name": "ctr-live", "model": "ctr@1", "replicas": 2,
            "resources": {"cpu": 0.5, "memory": "512Mi"}})
        rows = trained.records[:4]
        wait_for(lambda: api.c.post("/api/v1/deployments/ctr-live/predict",
                                    json=rows).status_code == 200, 120, "predictions")
        before = api.ok("GET", "/api/v1/deployments/ctr-live")["replica_status"]
        token = api.c.headers["Authorization"]
        api.close()
        admin.close()
    finally:
        server.stop()

    server = start_server(home, CONFIG)
    try:
        api = Api(server, token.removeprefix("Bearer "))
        r = api.c.post("/api/v1/deployments/ctr-live/predict", json=rows)
        assert r.status_code == 200, r.text
        after = api.ok("GET", "/api/v1/deployments/ctr-live")
        assert after["state"] == "running"
        assert [x["started_at"] for x in after["replica_status"]] == \
            [x["started_at"] for x in before]  # re-adopted, not restarted
        assert not [e for e in api.ok("GET", "/api/v1/deployments/ctr-live/events")
                    if e["type"] == "replica_restarted"]

        os.kill(_serve_pid(home, d["id"], 1, before[1]["started_at"]), signal.SIGKILL)
        wait_for(lambda: any(e["type"] == "replica_restarted" and e["data"]["replica"] == 1
                             for e in api.ok("GET", "/api/v1/deployments/ctr-live/events")),
                 60, "replica 1 to be restarted by the new server")
        back = f"127.0.0.1:{before[1]['port']}"
        wait_for(lambda: api.c.post("/api/v1/deployments/ctr-live/predict", json=rows)
                 .headers.get("X-Plinth-Replica") == back, 120, "replica 1 to answer again")
        api.ok("DELETE", "/api/v1/deployments/ctr-live")
        wait_for(lambda: all(x["state"] not in ("running", "launching") for x in api.ok(
            "GET", "/api/v1/deployments/ctr-live")["replica_status"]), 60, "replicas to stop")
        api.close()
    finally:
        server.stop()
