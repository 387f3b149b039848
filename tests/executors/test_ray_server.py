"""Plinth on Ray end to end: a real ``plinth server`` subprocess with
``executor: {kind: ray, ...}`` on the session's 2-node Ray cluster (plus a third node
that leaves).

One scenario, in order (each step needs the state the one before left):

1. a ps + worker gang that cannot fit one node spans ``head`` and ``w1``; each
   replica gets the environment contract with node IPs and real ports, and binds its
   port; its log reaches the API;
2. a one-replica job lands on node ``n3``; ``n3`` leaves: the replica is ``lost`` with
   the reason, and the job's retry takes over (it waits for capacity);
3. the server stops and starts again while the gang runs: it re-attaches -- the same
   replicas finish the job, none is started twice;
4. the retry runs on a remaining node and succeeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _executor_helpers import wait_for
from integration._helpers import ADMIN_TOKEN, FINAL, Api, cancel_all, start_server

pytestmark = pytest.mark.slow

#: Prints its contract, binds its port, waits for the file $GO, exits 0.
REPLICA = (
    "import json, os, socket, sys, time\n"
    "keys = ['PLINTH_ROLE', 'PLINTH_REPLICA', 'PLINTH_ROLES', 'PLINTH_PORT', 'PLINTH_URL',\n"
    "        'MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE']\n"
    "print('contract', json.dumps({k: os.environ.get(k) for k in keys}), flush=True)\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(os.environ['PLINTH_PORT']))); s.listen()\n"
    "print('start', flush=True)\n"
    "while not os.path.exists(os.environ['GO']): time.sleep(0.05)\n"
    "print('end', flush=True)\n"
)


def _job(name: str, roles: dict[str, dict], go: Path, retries: int = 0) -> dict:
    return {
        "name": name,
        "retries": retries,
        "roles": {
            role: {
                "replicas": 1,
                "resources": {"memory": "128Mi", **resources},
                "command": [sys.executable, "-u", "-c", REPLICA],
                "env": {"GO": str(go)},
            }
            for role, resources in roles.items()
        },
    }


def _wait_state(api: Api, jid: str, states: set[str]) -> dict:
    """The job once in one of `states`; on timeout, fail with its events and explain."""
    try:
        return api.wait_state(jid, states, timeout=60)
    except AssertionError as e:
        why = api.c.get(f"/api/v1/jobs/{jid}/explain").text
        raise AssertionError(f"{e}; events: {api.events(jid)}; explain: {why}") from None


def _log(api: Api, jid: str, role: str, attempt: int | None = None) -> str:
    q = f"?attempt={attempt}" if attempt is not None else ""
    r = api.c.get(f"/api/v1/jobs/{jid}/logs/{role}/0{q}")
    return r.text if r.status_code == 200 else ""


def test_plinth_on_ray_gang_node_loss_and_restart(ray_cluster, tmp_path: Path) -> None:
    ray_cluster.add_node("n3", num_cpus=1)
    config = {
        "executor": {
            "kind": "ray", "address": ray_cluster.address, "node_ip_address": "127.0.0.1",
            "agent_root": str(tmp_path / "agents"),
        },
        "scheduler": {"poll_interval": 0.1},
        "jobs": {"grace": "2s", "retry_backoff": {"initial": "0.1s", "max": "0.5s"}},
    }  # fmt: skip
    home = tmp_path / "home"
    go = tmp_path / "go"
    server = start_server(home, config)
    admin = Api(server, ADMIN_TOKEN)
    try:
        nodes = {n["name"] for n in admin.ok("GET", "/api/v1/nodes")}
        assert nodes >= {"head", "w1", "n3"}

        # 1. The gang: ps takes head's 2 cores, the worker w1's GPU (CPU work stays off
        # GPU nodes): it must span head and w1.
        spec = _job("gang", {"ps": {"cpu": 2}, "worker": {"cpu": 1, "gpu": 1}}, go)
        gang = admin.ok("POST", "/api/v1/jobs", json=spec)
        gid = gang["id"]
        _wait_state(admin, gid, {"running"})
        reps = {r["role"]: r for r in admin.ok("GET", f"/api/v1/jobs/{gid}/replicas")}
        assert {reps["ps"]["node"], reps["worker"]["node"]} == {"head", "w1"}
        for role in ("ps", "worker"):
            wait_for(lambda role=role: "start" in _log(admin, gid, role), timeout=60,
                     what=f"{role} to bind its port")  # fmt: skip
        seen = {
            role: json.loads(_log(admin, gid, role).split("contract ", 1)[1].split("\n")[0])
            for role in ("ps", "worker")
        }
        roles = json.loads(seen["ps"]["PLINTH_ROLES"])
        assert roles == {
            "ps": [f"127.0.0.1:{reps['ps']['port']}"],
            "worker": [f"127.0.0.1:{reps['worker']['port']}"],
        }
        assert seen["worker"]["PLINTH_PORT"] == str(reps["worker"]["port"])

        # 2. A job on n3 (the only CPU node with a free core); n3 leaves.
        spec = _job("lone", {"main": {"cpu": 1}}, go, retries=1)
        lone = admin.ok("POST", "/api/v1/jobs", json=spec)
        lid = lone["id"]
        _wait_state(admin, lid, {"running"})
        (rep,) = admin.ok("GET", f"/api/v1/jobs/{lid}/replicas")
        assert rep["node"] == "n3"
        wait_for(lambda: "start" in _log(admin, lid, "main"), timeout=60, what="lone to start")
        ray_cluster.remove_node("n3")
        wait_for(
            lambda: any("node n3 left the Ray cluster" in (e["reason"] or "")
                        for e in admin.events(lid)),
            timeout=60, what="the node loss to be reported",
        )  # fmt: skip
        said = [e["reason"] for e in admin.events(lid) if "n3 left" in (e["reason"] or "")]
        assert "lost: node n3 left the Ray cluster" in said[0], said
        assert admin.job(lid)["state"] not in FINAL  # the retry takes over

        # 3. Restart the server while the gang runs; it re-attaches.
        admin.close()
        server.stop()
        server = start_server(home, config)
        admin = Api(server, ADMIN_TOKEN)
        assert admin.job(gid)["state"] == "running", admin.events(gid)
        now = admin.ok("GET", f"/api/v1/jobs/{gid}/replicas")
        assert sorted((r["role"], r["attempt"], r["state"]) for r in now) == [
            ("ps", 0, "running"), ("worker", 0, "running"),
        ], now  # fmt: skip
        go.write_text("")
        assert _wait_state(admin, gid, FINAL)["state"] == "succeeded"
        for role in ("ps", "worker"):
            log = _log(admin, gid, role)
            assert log.count("start") == 1 and log.count("end") == 1, log  # not twice
        replicas = admin.ok("GET", f"/api/v1/jobs/{gid}/replicas")
        assert sorted((r["role"], r["attempt"], r["state"]) for r in replicas) == [
            ("ps", 0, "succeeded"), ("worker", 0, "succeeded"),
        ]  # fmt: skip

        # 4. The retry of the lost job runs on a node that is still there.
        done = _wait_state(admin, lid, FINAL)
        assert done["state"] == "succeeded"
        final = [r for r in admin.ok("GET", f"/api/v1/jobs/{lid}/replicas") if r["attempt"] == 1]
        assert [r["state"] for r in final] == ["succeeded"]
        assert final[0]["node"] == "head"
    finally:
        try:
            cancel_all(admin)
        finally:
            admin.close()
            server.stop()


def test_racing_submissions_never_over_admit_a_quota_on_ray(ray_cluster, tmp_path: Path) -> None:
    """Issue 3's race on the Ray executor: 40 threads submit at once into a group with
    1 core of quota (no borrowing); every job holds until the end, so exactly two
    half-core jobs may ever be admitted, whatever the cluster has free."""
    import threading

    from integration._helpers import make_member

    config = {
        "executor": {
            "kind": "ray", "address": ray_cluster.address, "node_ip_address": "127.0.0.1",
            "agent_root": str(tmp_path / "agents"),
        },
        "scheduler": {"poll_interval": 0.05},
        "jobs": {"grace": "1s"},
    }  # fmt: skip
    server = start_server(tmp_path / "home", config)
    admin = Api(server, ADMIN_TOKEN)
    release = tmp_path / "release"
    try:
        admin.ok("PATCH", "/api/v1/groups/default", json={"quota": {"cpu": 0, "memory": 0}})
        no_borrow = {"cpu": 0, "memory": 0, "gpu": 0}
        member = make_member(admin, server, "racers", "racer",
                             quota={"cpu": 1, "memory": "4Gi"}, borrow_limit=no_borrow)  # fmt: skip
        token = member.c.headers["Authorization"].removeprefix("Bearer ")
        hold = f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)\n"
        n = 40
        ids: list[str] = []
        errors: list[str] = []
        barrier = threading.Barrier(n)
        lock = threading.Lock()

        def submit(i: int) -> None:
            api = Api(server, token)
            try:
                barrier.wait()
                jid = api.submit(f"race-{i}", hold, cpu=0.5, memory="64Mi")
                with lock:
                    ids.append(jid)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))
            finally:
                api.close()

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(ids) == n
        wait_for(
            lambda: sum(admin.job(j)["state"] == "running" for j in ids) == 2,
            timeout=60, what="two of the racing jobs to run",
        )  # fmt: skip
        admitted = [j for j in ids if any(e["type"] == "admitted" for e in admin.events(j))]
        assert len(admitted) == 2  # ever: nothing has ended
        member.close()
    finally:
        release.touch()
        try:
            cancel_all(admin)
        finally:
            admin.close()
            server.stop()
