"""Deployments through a real ``plinth server`` (issue 13, Done-when 3): a deployment of
two replicas under the group's quota keeps answering through the platform endpoint when
one replica is killed with SIGKILL (zero failed requests), the killed replica comes back
(events say so), the deployment follows its alias (and back: a rollback), and deleting
it returns its resources to the quota. Bad input gets a 4xx that names what to fix."""

from __future__ import annotations

import io
import os
import signal
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _waiting import wait_for
from integration._helpers import ADMIN_TOKEN, Api, make_member, start_server

pytestmark = pytest.mark.slow

CONFIG = {
    "nodes": [{"name": "n1", "cpu": 8, "memory": "16Gi"}],
    "uploads": {"max_packed": 16 * 1024 * 1024, "max_unpacked": 64 * 1024 * 1024,
                "max_files": 100},
    "scheduler": {"poll_interval": 0.5},
}


def _targz(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=root.name)
    return buf.getvalue()


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[tuple[Any, Path]]:
    home = tmp_path_factory.mktemp("deploy-home")
    server = start_server(home, CONFIG)
    try:
        yield server, home
    finally:
        server.stop()


def _register(api: Api, name: str, package: Path) -> int:
    r = api.c.post("/api/v1/files", content=_targz(package),
                   headers={"Content-Type": "application/gzip"})
    assert r.status_code in (200, 201), r.text
    return api.ok("POST", f"/api/v1/models/{name}/versions",
                  json={"file": r.json()["sha256"]})["version"]


def _used_cpu(admin: Api, group: str) -> float:
    return admin.ok("GET", f"/api/v1/groups/{group}")["status"]["used"]["cpu"]


def _serve_pid(home: Path, wid: str, replica: int, started_at: str) -> int:
    """The pid of the model server of `replica` (its supervisor writes it)."""
    status = home / "workloads" / wid / ".status"
    found = []
    for d in status.iterdir():
        if d.name.startswith(f"replica-{replica}-") and (d / "pid").exists() \
                and not (d / "exit_code").exists():
            found.append(int((d / "pid").read_text().split()[0]))
    assert len(found) == 1, (found, started_at)
    return found[0]


def test_deployment_survives_a_killed_replica_and_follows_its_alias(platform, trained):
    server, home = platform
    admin = Api(server, ADMIN_TOKEN)
    api = make_member(admin, server, "recs", "ann",
                      quota={"cpu": 2, "memory": "4Gi"}, borrow_limit={"cpu": 0})
    assert _register(api, "ctr", trained.v1) == 1
    assert _register(api, "ctr", trained.v2) == 2
    api.ok("PUT", "/api/v1/models/ctr/aliases/production", json={"version": 1})

    # Bad input: a 4xx naming what to fix, never a 500, nothing created.
    for body, status, words in [
        ({"name": "x", "model": "nope@production"}, 422, "model"),
        ({"name": "x", "model": "ctr@staging"}, 422, "alias 'staging'"),
        ({"name": "x", "model": "ctr@9"}, 422, "no version 9"),
        ({"name": "x", "model": "ctr"}, 422, "model"),
        ({"name": "x", "model": "ctr@production", "replicas": 3,
          "resources": {"cpu": 1, "memory": "256Mi"}}, 422, "quota"),
        ({"name": "x", "model": "ctr@production", "replica": 2}, 422, "replica"),
    ]:
        r = api.c.post("/api/v1/deployments", json=body)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert words in r.text, (body, r.text)
    assert api.ok("GET", "/api/v1/deployments") == []
    assert api.c.get("/api/v1/deployments/x").status_code == 404
    assert api.c.post("/api/v1/deployments/x/predict", json=[{}]).status_code == 404

    d = api.ok("POST", "/api/v1/deployments", json={
        "name": "ctr-live", "model": "ctr@production", "replicas": 2,
        "resources": {"cpu": 0.5, "memory": "512Mi"}})
    assert d["alias"] == "production" and d["version"] == 1 and d["replicas"] == 2
    r = api.c.post("/api/v1/deployments", json={"name": "ctr-live", "model": "ctr@1"})
    assert r.status_code == 409 and "already exists" in r.text

    rows = trained.records[:8]

    def predict() -> Any:
        return api.c.post("/api/v1/deployments/ctr-live/predict", json=rows)

    wait_for(lambda: api.ok("GET", "/api/v1/deployments/ctr-live")["ready_replicas"] == 2,
             120, "both replicas running")
    wait_for(lambda: predict().status_code == 200, 120, "the first prediction")
    # Both replicas answer (round-robin), each serving version 1.
    seen = {}
    wait_for(lambda: seen.update({(r := predict()).headers["X-Plinth-Replica"]:
                                  r.json()["version"]}) or len(seen) == 2, 60, "both replicas")
    assert set(seen.values()) == {"1"}
    # Its resources count in the group's quota while it runs.
    assert _used_cpu(admin, "recs") == pytest.approx(1.0)

    # Constant load through the platform endpoint while replica 0 is SIGKILLed and while
    # the alias moves: not one request may fail.
    failures: list[str] = []
    done = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            r = predict()
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:200]}")
            done[0] += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: done[0] >= 20, 60, "load to run")
        before = api.ok("GET", "/api/v1/deployments/ctr-live")["replica_status"][0]
        os.kill(_serve_pid(home, d["id"], 0, before["started_at"]), signal.SIGKILL)
        at_kill = done[0]

        def restarted() -> bool:
            evs = api.ok("GET", "/api/v1/deployments/ctr-live/events")
            return any(e["type"] == "replica_restarted" and e["data"]["replica"] == 0
                       for e in evs)

        wait_for(restarted, 60, "replica 0 to be restarted")
        wait_for(lambda: (x := api.ok("GET", "/api/v1/deployments/ctr-live"))[
            "ready_replicas"] == 2 and x["replica_status"][0]["started_at"]
            != before["started_at"], 60, "replica 0 running again")
        # ...and serving again: the platform sends it requests once it answers.
        back = f"127.0.0.1:{before['port']}"
        wait_for(lambda: predict().headers["X-Plinth-Replica"] == back, 120,
                 "the restarted replica to answer")
        wait_for(lambda: done[0] >= at_kill + 50, 120, "load after the restart")

        # Still under load, the deployment follows its alias: version 2 is loaded beside
        # version 1 and swapped in on each replica, then back (a rollback).
        for version in (2, 1):
            api.ok("PUT", "/api/v1/models/ctr/aliases/production", json={"version": version})

            def all_on(v: int) -> bool:
                got = {}
                for _ in range(8):
                    r = predict()
                    assert r.status_code == 200, r.text
                    got[r.headers["X-Plinth-Replica"]] = r.json()["version"]
                return len(got) == 2 and set(got.values()) == {str(v)}

            wait_for(lambda v=version: all_on(v), 120, f"both replicas on version {version}")
        at_end = done[0]
        wait_for(lambda: done[0] >= at_end + 20, 60, "load after the swaps")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert failures == [], failures[:5]
    evs = api.ok("GET", "/api/v1/deployments/ctr-live/events")
    exited = [e for e in evs if e["type"] == "replica_exited"]
    assert exited and "signal" in exited[0]["reason"].lower() + str(exited[0]["data"])
    assert api.ok("GET", "/api/v1/deployments/ctr-live")["state"] == "running"
    assert _used_cpu(admin, "recs") == pytest.approx(1.0)

    swaps = [e for e in api.ok("GET", "/api/v1/deployments/ctr-live/events")
             if e["type"] == "version_swapped"]
    assert [e["data"]["version"] for e in swaps].count(2) == 2
    assert [e["data"]["version"] for e in swaps].count(1) == 2

    # Deleting it stops its replicas and returns its resources to the quota.
    out = api.ok("DELETE", "/api/v1/deployments/ctr-live")
    assert out["state"] == "cancelled"
    wait_for(lambda: _used_cpu(admin, "recs") == 0, 60, "the quota to be returned")
    wait_for(lambda: all(r["state"] not in ("running", "launching") for r in
                         api.ok("GET", "/api/v1/deployments/ctr-live")["replica_status"]),
             60, "the replicas to stop")
    assert api.ok("GET", "/api/v1/deployments") == []
    assert [x["state"] for x in api.ok("GET", "/api/v1/deployments?all=true")] == ["cancelled"]
    r = api.c.post("/api/v1/deployments/ctr-live/predict", json=rows)
    assert r.status_code == 409 and "cancelled" in r.text
    api.close()
    admin.close()


def test_cli_scale_and_live_deltas(platform, trained):
    """``plinth deploy create|list|get|scale|delete -o json``; a pinned version gets the
    deltas published for it applied live; scaling is admitted under the quota."""
    from cli._helpers import plinth, plinth_json

    server, _ = platform
    admin = Api(server, ADMIN_TOKEN)
    admin.ok("POST", "/api/v1/groups", json={"name": "ads", "quota": {"cpu": 2}})
    token = admin.ok("POST", "/api/v1/users", json={"name": "bob", "group": "ads"})["token"]
    api = Api(server, token)
    env = {**os.environ, "PLINTH_URL": server.url, "PLINTH_TOKEN": token}
    assert _register(api, "rank", trained.v2) == 1

    r = plinth(["deploy", "create", "rank-live", "--model", "nope@production"], env)
    assert r.returncode != 0 and "model" in (r.stderr + r.stdout), r
    d = plinth_json(["deploy", "create", "rank-live", "--model", "rank@1", "--replicas", "2",
                     "--cpu", "0.5", "--memory", "256Mi"], env)
    assert d["alias"] is None and d["version"] == 1 and d["demand"]["cpu"] == 1.0
    assert [x["name"] for x in plinth_json(["deploy", "list"], env)] == ["rank-live"]

    def ready(n: int) -> bool:
        x = plinth_json(["deploy", "get", "rank-live"], env)
        return x["state"] == "running" and x["ready_replicas"] == n == x["replicas"]

    wait_for(lambda: ready(2), 120, "2 replicas")
    rows = trained.records[:4]

    def served() -> dict[str, Any]:
        r = api.c.post("/api/v1/deployments/rank-live/predict", json=rows)
        assert r.status_code == 200, r.text
        return r.json()

    wait_for(lambda: served()["delta_seq"] == 0, 60, "predictions")

    # Deltas published for the served version are applied live, in order.
    for seq, delta in enumerate(trained.deltas[:3], start=1):
        r = api.c.post("/api/v1/files", content=_targz(delta),
                       headers={"Content-Type": "application/gzip"})
        api.ok("POST", "/api/v1/models/rank/versions/1/deltas",
               json={"seq": seq, "file": r.json()["sha256"]})
    wait_for(lambda: all(served()["delta_seq"] == 3 for _ in range(4)), 120,
             "deltas 1..3 applied on both replicas")
    applied = [e for e in api.ok("GET", "/api/v1/deployments/rank-live/events")
               if e["type"] == "deltas_applied"]
    assert {e["data"]["replica"] for e in applied} == {"replica-0", "replica-1"}

    # Scale down: admitted again with one replica; the quota holds half as much.
    out = plinth_json(["deploy", "scale", "rank-live", "1"], env)
    assert out["replicas"] == 1
    wait_for(lambda: ready(1), 120, "1 replica after scaling")
    assert admin.ok("GET", "/api/v1/groups/ads")["status"]["used"]["cpu"] == pytest.approx(0.5)

    out = plinth_json(["deploy", "delete", "rank-live"], env)
    assert out["state"] == "cancelled"
    wait_for(lambda: admin.ok("GET", "/api/v1/groups/ads")["status"]["used"]["cpu"] == 0, 60,
             "the quota to be returned")
    assert plinth_json(["deploy", "list"], env) == []
    r = plinth(["deploy", "scale", "rank-live", "2"], env)
    assert r.returncode != 0 and "cancelled" in r.stderr + r.stdout, r
    api.close()
    admin.close()


def test_canary_split(platform, trained):
    """A canary (another version of the same model on its own replicas) gets the set
    share of the platform endpoint's requests; the share changes at once."""
    server, _ = platform
    admin = Api(server, ADMIN_TOKEN)
    api = make_member(admin, server, "growth", "cat", quota={"cpu": 2, "memory": "4Gi"})
    assert _register(api, "cvr", trained.v1) == 1
    assert _register(api, "cvr", trained.v2) == 2
    api.ok("PUT", "/api/v1/models/cvr/aliases/production", json={"version": 1})
    api.ok("PUT", "/api/v1/models/cvr/aliases/canary", json={"version": 2})
    base = {"name": "cvr-live", "model": "cvr@production", "replicas": 1,
            "resources": {"cpu": 0.5, "memory": "512Mi"}}
    for canary, words in [("ctr@canary", "same model"), ("cvr@nope", "no alias 'nope'")]:
        r = api.c.post("/api/v1/deployments", json={**base, "canary": canary})
        assert r.status_code == 422 and words in r.text, r.text
    d = api.ok("POST", "/api/v1/deployments",
               json={**base, "canary": "cvr@canary", "canary_percent": 100})
    assert d["canary"] == {"alias": "canary", "version": 2, "percent": 100, "replicas": 1}
    assert d["demand"]["cpu"] == 1.0
    rows = trained.records[:4]

    def versions(n: int = 8) -> set[str]:
        out = set()
        for _ in range(n):
            r = api.c.post("/api/v1/deployments/cvr-live/predict", json=rows)
            assert r.status_code == 200, r.text
            out.add(r.json()["version"])
        return out

    wait_for(lambda: len([x for x in api.ok("GET", "/api/v1/deployments/cvr-live")[
        "replica_status"] if x["state"] == "running"]) == 2, 120, "both replicas running")
    wait_for(lambda: versions() == {"2"}, 120, "the canary to take every request")
    from cli._helpers import plinth, plinth_json

    env = {**os.environ, "PLINTH_URL": server.url, "PLINTH_TOKEN": api.c.headers[
        "Authorization"].removeprefix("Bearer ")}
    out = plinth_json(["deploy", "traffic", "cvr-live", "--canary-percent", "0"], env)
    assert out["canary"]["percent"] == 0
    shown = plinth(["deploy", "get", "cvr-live"], env).stdout
    assert "0% of requests" in shown and "canary-0" in shown, shown
    assert versions(16) == {"1"}
    api.ok("POST", "/api/v1/deployments/cvr-live/traffic", json={"canary_percent": 50})
    seen: set[str] = set()
    wait_for(lambda: seen.update(versions()) or seen == {"1", "2"}, 60, "both versions")
    r = api.c.post("/api/v1/deployments/cvr-live/traffic", json={"canary_percent": 101})
    assert r.status_code == 422
    api.ok("DELETE", "/api/v1/deployments/cvr-live")
    wait_for(lambda: admin.ok("GET", "/api/v1/groups/growth")["status"]["used"]["cpu"] == 0,
             60, "the quota to be returned")
    api.close()
    admin.close()
