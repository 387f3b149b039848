"""Notebooks against a real ``plinth server`` process over HTTP: a cell run through
the Jupyter kernel API submits a platform job with the SDK (no login: PLINTH_URL and
PLINTH_TOKEN are in the kernel's environment) and sees it succeed; a server restart
keeps a running session reachable and managed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from _waiting import wait_for

from plinth.cli import local_server
from tests.integration._helpers import ADMIN_TOKEN, Api, start_server
from tests.notebooks._kernel import run_cell, start_kernel

CONFIG: dict[str, Any] = {
    "nodes": [{"name": "n1", "cpu": 8, "memory": "16Gi", "gpu": 0}],
    "scheduler": {"poll_interval": 0.05},
    "jobs": {"grace": "2s"},
    "notebooks": {"check_interval": 0.2, "start_timeout": "90s"},
}
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}

pytestmark = pytest.mark.slow


def _member(admin: Api, server: local_server.LocalServer, name: str) -> tuple[Api, str]:
    admin.ok("POST", "/api/v1/groups", json={"name": name, "quota": {"cpu": 4, "memory": "8Gi"}})
    token = admin.ok("POST", "/api/v1/users", json={"name": f"{name}-u", "group": name})["token"]
    return Api(server, token), token


def _ready(api: Api, nid: str) -> dict[str, Any]:
    def ready() -> Any:
        nb = api.ok("GET", f"/api/v1/notebooks/{nid}")
        assert nb["state"] not in FINAL, f"{nb['reason']}\n{nb['log_tail']}"
        return nb["ready"] and nb

    return wait_for(ready, 120, f"notebook {nid} to be ready", interval=0.2)


def _stop(api: Api, nid: str) -> None:
    api.ok("POST", f"/api/v1/notebooks/{nid}/stop")
    wait_for(lambda: api.ok("GET", f"/api/v1/notebooks/{nid}")["state"] in FINAL, 30,
             "the session to stop")  # fmt: skip


CELL = f"""
import sys
from plinth.client import Client
plinth = Client()
job = plinth.jobs.submit({{"name": "from-a-notebook", "roles": {{"main": {{
    "resources": {{"cpu": 0.1, "memory": "64Mi"}},
    "command": [{sys.executable!r}, "-c", "print('hello from the job')"]}}}}}})
done = plinth.jobs.wait(job["id"], timeout=120)
print(done["id"], done["state"], done["group"])
import os
print("token:", os.environ["PLINTH_TOKEN"])
try:
    plinth.users.list()
except Exception as e:
    print("admin-only:", type(e).__name__)
"""


def test_a_cell_submits_a_job_with_the_sdk_and_it_succeeds(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", CONFIG)
    admin = Api(server, ADMIN_TOKEN)
    try:
        api, _ = _member(admin, server, "ads")
        nb = _ready(api, api.ok("POST", "/api/v1/notebooks",
                                json={"resources": {"cpu": 1, "memory": "1Gi"}})["id"])  # fmt: skip
        kernel = start_kernel(nb)
        out = run_cell(nb, kernel, CELL, timeout=180)
        assert out["status"] == "ok", out
        job_id, state, group = out["stdout"].split("\n")[0].split()
        assert (state, group) == ("succeeded", "ads")
        job = api.job(job_id)  # the user's own job, in the user's group
        assert job["state"] == "succeeded" and job["user"] == "ads-u"
        assert "admin-only: " in out["stdout"]  # the session's token never has admin rights
        session_token = out["stdout"].split("token: ")[1].split()[0]
        whoami = httpx.get(f"{server.url}/api/v1/whoami", trust_env=False,
                           headers={"Authorization": f"Bearer {session_token}"})  # fmt: skip
        assert whoami.status_code == 200 and whoami.json()["name"] == "ads-u"
        _stop(api, nb["id"])
        # The session's platform token dies with the session.
        whoami = httpx.get(f"{server.url}/api/v1/whoami", trust_env=False,
                           headers={"Authorization": f"Bearer {session_token}"})  # fmt: skip
        assert whoami.status_code == 401
    finally:
        admin.close()
        server.stop()


def test_a_server_restart_keeps_running_sessions_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    server = start_server(home, CONFIG)
    admin = Api(server, ADMIN_TOKEN)
    api, token = _member(admin, server, "rec")
    nb = _ready(api, api.ok("POST", "/api/v1/notebooks", json={"idle_timeout": "1h"})["id"])
    admin.close()
    api.close()
    server.stop()
    # The session outlives the server...
    status = httpx.get(nb["url"].removesuffix("/lab") + "/api/status",
                       headers={"Authorization": f"token {nb['token']}"}, trust_env=False)
    assert status.status_code == 200
    # ...and the restarted server (same address: PLINTH_URL in the kernels stays right)
    # re-adopts it: running, ready, still answering its token, still managed.
    monkeypatch.setattr(local_server, "free_port", lambda: server.port)
    server = start_server(home, CONFIG)
    api = Api(server, token)
    try:
        again = api.ok("GET", f"/api/v1/notebooks/{nb['id']}")
        assert again["state"] == "running" and again["ready"], again
        assert again["url"] == nb["url"] and again["token"] == nb["token"]
        kernel = start_kernel(again)
        out = run_cell(again, kernel, "print(40 + 2)")
        assert out["stdout"].strip() == "42"
        wait_for(lambda: (api.ok("GET", f"/api/v1/notebooks/{nb['id']}")["activity"] or {})
                 .get("kernels") == 1, 30, "the restarted monitor to read the session")
        _stop(api, nb["id"])
        wait_for(lambda: not _answers(nb), 30, "JupyterLab to exit")
    finally:
        api.close()
        server.stop()


def _answers(nb: dict[str, Any]) -> bool:
    try:
        httpx.get(nb["url"], trust_env=False, timeout=2)
    except httpx.HTTPError:
        return False
    return True
