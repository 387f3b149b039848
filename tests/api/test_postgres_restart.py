"""PostgreSQL restarted under a stream of submissions (issue 8, Done when 6): no
acknowledged submission is lost or duplicated, the outage answers 503 (never 500),
and the server works again afterwards. A PRIVATE cluster (initdb, pg_ctl on a free
port in a temp dir) is started for the test: the shared one is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _waiting import wait_for

from plinth.cli.local_server import LocalServer, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ADMIN = "plt_pg-restart-admin-token"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="no PostgreSQL 15 binaries"),
]


def _as_postgres(args: list[str], **kw) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True,
                          timeout=120, **kw)  # fmt: skip


class PrivatePostgres:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="plinth-pg-", dir="/tmp"))
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.data = self.base / "data"
        self.port = free_port()
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync"])  # fmt: skip
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts,
                      "-l", str(self.base / "log"), "-w", *args])  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def destroy(self) -> None:
        try:
            self._ctl("-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_a_postgres_restart_loses_no_acknowledged_submission(
    pg: PrivatePostgres, tmp_path: Path
) -> None:
    config = {"nodes": [{"name": "n1", "cpu": 4, "memory": "4Gi"}],
              "scheduler": {"poll_interval": 0.05}, "jobs": {"grace": "1s"}}  # fmt: skip
    server = LocalServer(tmp_path / "home", config=config, admin_token=ADMIN,
                         env={"PLINTH_DATABASE_URL": pg.url}).start()  # fmt: skip
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=30)  # fmt: skip
    acked: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()
    spec = {"name": "s", "roles": {"main": {"resources": {"cpu": 0.01, "memory": 1},
                                            "command": ["true"]}}}  # fmt: skip

    def submit_forever() -> None:
        with httpx.Client(base_url=server.url, timeout=30,
                          headers={"Authorization": f"Bearer {ADMIN}"}) as c:  # fmt: skip
            while not stop.is_set():
                try:
                    r = c.post("/api/v1/jobs", json=spec)
                except httpx.HTTPError:
                    statuses.append(-1)
                    continue
                statuses.append(r.status_code)
                if r.status_code == 201:
                    acked.append(r.json()["id"])

    worker = threading.Thread(target=submit_forever, daemon=True)
    try:
        worker.start()
        wait_for(lambda: len(acked) >= 10, 60, "submissions before the restart")
        before = len(acked)
        pg.restart()
        wait_for(lambda: len(acked) >= before + 10, 120, "submissions after the restart")
        stop.set()
        worker.join(60)
        assert 500 not in statuses, sorted(set(statuses))
        assert set(statuses) <= {201, 503, -1}, sorted(set(statuses))
        assert len(set(acked)) == len(acked)
        listed = {j["id"] for j in admin.get("/api/v1/jobs", params={"limit": 10000}).json()}
        assert set(acked) <= listed, set(acked) - listed
        # The control loop came back too: a job submitted now runs to the end.
        r = admin.post("/api/v1/jobs", json=spec)
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        wait_for(lambda: admin.get(f"/api/v1/jobs/{jid}").json()["state"] == "succeeded", 60,
                 "a job after the restart to succeed")  # fmt: skip
    finally:
        stop.set()
        admin.close()
        server.stop()
