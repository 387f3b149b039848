"""Kill -9 the server while jobs run, restart it: jobs end right, logs complete, nothing lost.

The server is a real subprocess (``python -m plinth.server``) on a free port. The jobs
wait for a file that the test creates while the server is down, so their ends happen
during the outage or right after the restart -- both are covered by the same code path
(the restarted server polls the stored handles).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import ADMIN_TOKEN, wait_for

WAIT_FOR_GO = (
    "import os, sys, time; print('start', flush=True)\n"
    "while not os.path.exists(os.environ['GO']): time.sleep(0.02)\n"
    "print('end', flush=True); sys.exit(int(os.environ['CODE']))\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProc:
    def __init__(self, home: Path, config: Path, port: int) -> None:
        self.home, self.config, self.port = home, config, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PLINTH_HOME": str(self.home), "PLINTH_ADMIN_TOKEN": ADMIN_TOKEN}
        env.pop("PLINTH_DATABASE_URL", None)
        with open(self.home / "server.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "plinth.server", "--port", str(self.port),
                 "--config", str(self.config)],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, (
                self.home / "server.log"
            ).read_text()
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 30, "server to be healthy")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "plinth.yaml"
    config.write_text(yaml.safe_dump({
        "nodes": [{"name": "n1", "cpu": 4, "memory": "8Gi"}],
        "scheduler": {"poll_interval": 0.05},
        "jobs": {"grace": "1s", "retry_backoff": {"initial": 0.05}},
    }))  # fmt: skip
    s = ServerProc(home, config, _free_port())
    try:
        yield s
    finally:
        s.stop()


def test_kill9_and_restart_loses_nothing(server: ServerProc, tmp_path: Path) -> None:
    go = tmp_path / "go"
    server.start()
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    admin.post("/api/v1/groups", json={"name": "team"}).raise_for_status()
    tok = admin.post("/api/v1/users", json={"name": "alice", "group": "team"}).json()["token"]
    c = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tok}"})

    def submit(name: str, code: int, replicas: int = 1) -> str:
        r = c.post(
            "/api/v1/jobs",
            json={
                "name": name,
                "roles": {
                    "main": {
                        "replicas": replicas,
                        "resources": {"cpu": 0.1, "memory": 64},
                        "command": [sys.executable, "-c", WAIT_FOR_GO],
                        "env": {"GO": str(go), "CODE": str(code)},
                    }
                },
            },
        )
        r.raise_for_status()
        return r.json()["id"]

    def job(jid: str) -> dict:
        return c.get(f"/api/v1/jobs/{jid}").json()

    done_before = c.post(
        "/api/v1/jobs",
        json={
            "name": "early",
            "roles": {
                "main": {
                    "resources": {"cpu": 0.1},
                    "command": [sys.executable, "-c", "print('early')"],
                }
            },
        },
    ).json()["id"]
    wait_for(lambda: job(done_before)["state"] == "succeeded", 20, "early job")
    events_before = c.get(f"/api/v1/jobs/{done_before}/events").json()

    ok, bad = submit("ok", 0, replicas=2), submit("bad", 3)
    for jid in (ok, bad):
        wait_for(lambda jid=jid: job(jid)["state"] == "running", 20, "running")
    for jid, n in ((ok, 2), (bad, 1)):
        for i in range(n):
            wait_for(
                lambda jid=jid, i=i: c.get(f"/api/v1/jobs/{jid}/logs/main/{i}").text == "start\n",
                20,
                "replica started",
            )

    server.kill9()
    go.touch()  # the replicas finish while the server is down (or just after it is back)
    server.start()

    final_ok = wait_for(
        lambda: (j := job(ok))["state"] in ("succeeded", "failed") and j, 20, "ok job"
    )
    final_bad = wait_for(
        lambda: (j := job(bad))["state"] in ("succeeded", "failed") and j, 20, "bad"
    )
    assert final_ok["state"] == "succeeded", final_ok
    assert final_bad["state"] == "failed" and "exited with status 3" in final_bad["reason"]
    for i in range(2):
        r = c.get(f"/api/v1/jobs/{ok}/logs/main/{i}")
        assert r.text == "start\nend\n" and r.headers["X-Log-Complete"] == "true"
    types = [e["type"] for e in c.get(f"/api/v1/jobs/{ok}/events").json()]
    assert types[:3] == ["submitted", "admitted", "running"]
    assert "readopted" in types and types[-1] == "succeeded"
    # what was recorded before the kill is all still there
    assert job(done_before)["state"] == "succeeded"
    assert c.get(f"/api/v1/jobs/{done_before}/events").json() == events_before
    assert c.get(f"/api/v1/jobs/{done_before}/logs/main/0").text == "early\n"
    assert {j["id"] for j in c.get("/api/v1/jobs").json()} == {done_before, ok, bad}
    # and the server keeps working
    again = submit("after", 0)
    assert (
        wait_for(lambda: job(again)["state"] in ("succeeded", "failed") and job(again), 20)["state"]
        == "succeeded"
    )


def test_replica_running_across_a_restart_can_still_be_cancelled(server: ServerProc) -> None:
    server.start()
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    code = "import time; print('up', flush=True); time.sleep(120)"
    jid = admin.post(
        "/api/v1/jobs",
        json={
            "name": "long",
            "roles": {"main": {"resources": {"cpu": 0.1}, "command": [sys.executable, "-c", code]}},
        },
    ).json()["id"]
    wait_for(lambda: admin.get(f"/api/v1/jobs/{jid}/logs/main/0").text == "up\n", 20, "replica up")
    server.kill9()
    server.start()
    assert admin.get(f"/api/v1/jobs/{jid}").json()["state"] == "running"
    assert admin.post(f"/api/v1/jobs/{jid}/cancel").json()["state"] == "cancelled"
    rep = wait_for(
        lambda: (
            (r := admin.get(f"/api/v1/jobs/{jid}/replicas").json()[0])["state"] == "stopped" and r
        ),
        20,
        "re-adopted replica to be stopped",
    )
    assert rep["exit_code"] == -15
