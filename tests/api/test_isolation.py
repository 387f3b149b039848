"""Replica isolation on a server started as root (issue 8, Done when 1).

A real ``plinth server`` with ``isolation.mode: users``: a member's probe job tries to
read the admin token (its file and the server's /proc environment), the store, and
another group's log and code, and every read must fail. Also: the home is 0700 and
the server's alone, each group runs as its own OS user, and a server that does not
isolate says so at start.
"""

from __future__ import annotations

import io
import os
import pwd
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _waiting import wait_for

from plinth.cli.local_server import LocalServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="replica isolation needs a root server"),
]

SERVER_SECRET = "SERVER-ENV-SECRET-7f3a"
VICTIM_LOG = "VICTIM-LOG-SECRET-91c2"
VICTIM_CODE = "VICTIM-CODE-SECRET-4d8e"
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def _archive(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Client:
    def __init__(self, url: str, token: str) -> None:
        self.c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})

    def ok(self, method: str, path: str, **kw) -> dict:
        r = self.c.request(method, path, timeout=30, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def log(self, jid: str) -> str:
        return self.c.get(f"/api/v1/jobs/{jid}/logs/main/0", timeout=30).text

    def wait(self, jid: str, states: set[str]) -> dict:
        return wait_for(
            lambda: (j := self.ok("GET", f"/api/v1/jobs/{jid}"))["state"] in states and j,
            60, f"job {jid} in {states}",
        )  # fmt: skip


@pytest.fixture
def run_root() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are 0700, no replica user could enter.
    base = Path(tempfile.mkdtemp(prefix="plinth-run-", dir="/tmp"))
    os.chmod(base, 0o711)
    yield base / "run"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path, run_root: Path) -> Iterator[LocalServer]:
    config = {
        "nodes": [{"name": "n1", "cpu": 8, "memory": "16Gi"}],
        "scheduler": {"poll_interval": 0.05},
        "jobs": {"grace": "1s"},
        "isolation": {"mode": "users", "run_root": str(run_root), "user_prefix": "pltest-"},
    }
    home = tmp_path / "home"
    home.mkdir(mode=0o755)  # an existing, world-readable home: narrowed at start
    os.chmod(home, 0o755)
    srv = LocalServer(home, config=config, env={"PLINTH_PROBE_SECRET": SERVER_SECRET})
    srv.start()
    try:
        yield srv
    finally:
        admin = _Client(srv.url, srv.admin_token())
        for j in admin.ok("GET", "/api/v1/jobs"):
            if j["state"] not in FINAL:
                admin.ok("POST", f"/api/v1/jobs/{j['id']}/cancel")
                admin.wait(j["id"], FINAL)
        srv.stop()


def _member(admin: _Client, url: str, group: str) -> _Client:
    admin.ok("POST", "/api/v1/groups", json={"name": group, "quota": {"cpu": 4, "memory": 8192}})
    token = admin.ok("POST", "/api/v1/users", json={"name": f"{group}-u", "group": group})["token"]
    return _Client(url, token)


def _probe_script(targets: dict[str, str]) -> str:
    lines = ["echo uid=$(id -u)"]
    for label, path in targets.items():
        lines.append(
            f"if cat '{path}' >/dev/null 2>&1; then echo OPEN {label}; cat '{path}'; "
            f"else echo DENIED {label}; fi"
        )
    lines.append(f"if ls '{os.path.dirname(targets['victim_workdir_code'])}/..' "
                 ">/dev/null 2>&1; then echo OPEN run_root_listing; "
                 "else echo DENIED run_root_listing; fi")  # fmt: skip
    return "\n".join(lines)


def test_a_members_job_reads_no_token_store_or_other_groups_files(
    server: LocalServer, run_root: Path
) -> None:
    home = server.home
    assert (home.stat().st_mode & 0o777) == 0o700, "an existing 0755 home is narrowed"
    admin = _Client(server.url, server.admin_token())
    victim = _member(admin, server.url, "victim")
    attacker = _member(admin, server.url, "attacker")

    sha = victim.ok(
        "POST", "/api/v1/files", content=_archive({"secret.txt": VICTIM_CODE.encode()}),
        headers={"Content-Type": "application/gzip"},
    )["sha256"]  # fmt: skip
    v = victim.ok("POST", "/api/v1/jobs", json={
        "name": "victim", "code": {"file": sha},
        "roles": {"main": {"resources": {"cpu": 0.1, "memory": 64},
                           "command": ["/bin/sh", "-c", f"echo {VICTIM_LOG}; exec sleep 120"]}},
    })["id"]  # fmt: skip
    victim.wait(v, {"running"})
    wait_for(lambda: VICTIM_LOG in victim.log(v), 30, "the victim's log line")

    targets = {
        "admin_token_file": str(home / "admin.token"),
        "server_environ": f"/proc/{server.process.pid}/environ",
        "store": str(home / "plinth.db"),
        "victim_log": str(home / "workloads" / v / "main-0.attempt-0.log"),
        "victim_workdir_code": str(run_root / v / "secret.txt"),
        "victim_shared_code": str(home / "code" / f"file-{sha}" / "secret.txt"),
    }
    for label in ("admin_token_file", "store", "victim_log", "victim_workdir_code"):
        assert Path(targets[label]).exists(), f"{label} must exist for the probe to mean much"
    a = attacker.ok("POST", "/api/v1/jobs", json={
        "name": "probe",
        "roles": {"main": {"resources": {"cpu": 0.1, "memory": 64},
                           "command": ["/bin/sh", "-c", _probe_script(targets)]}},
    })["id"]  # fmt: skip
    assert attacker.wait(a, FINAL)["state"] == "succeeded"
    out = attacker.log(a)

    for label in [*targets, "run_root_listing"]:
        assert f"DENIED {label}" in out, out
    assert "OPEN" not in out, out
    for secret in (SERVER_SECRET, VICTIM_LOG, VICTIM_CODE, server.admin_token()):
        assert secret not in out, out
    uid = int(out.split("uid=")[1].split()[0])
    assert uid != 0
    assert pwd.getpwuid(uid).pw_name.startswith("pltest-")
    assert (run_root / v).stat().st_uid not in (0, uid), "each group has its own OS user"
    assert ((run_root / v).stat().st_mode & 0o777) == 0o700


def test_the_victims_own_job_reads_its_code_in_a_directory_of_its_own(
    server: LocalServer, run_root: Path
) -> None:
    admin = _Client(server.url, server.admin_token())
    member = _member(admin, server.url, "owner")
    sha = member.ok(
        "POST", "/api/v1/files", content=_archive({"data.txt": b"hello from the archive"}),
        headers={"Content-Type": "application/gzip"},
    )["sha256"]  # fmt: skip
    script = "cat data.txt; echo; echo made > new.txt && echo wrote-new; " \
             "echo x >> data.txt 2>/dev/null && echo CHANGED-SHARED || echo shared-is-read-only"
    ids = [
        member.ok("POST", "/api/v1/jobs", json={
            "name": f"own-{i}", "code": {"file": sha},
            "roles": {"main": {"resources": {"cpu": 0.1, "memory": 64},
                               "command": ["/bin/sh", "-c", script]}},
        })["id"]
        for i in range(2)
    ]  # fmt: skip
    for jid in ids:
        assert member.wait(jid, FINAL)["state"] == "succeeded"
        out = member.log(jid)
        assert "hello from the archive" in out and "wrote-new" in out, out
        assert "shared-is-read-only" in out and "CHANGED-SHARED" not in out, out
    # One extraction, shared by both working directories (hard links to one inode).
    shared = server.home / "code" / f"file-{sha}" / "data.txt"
    assert os.stat(shared).st_nlink == 3
    assert (os.stat(shared).st_mode & 0o777) == 0o444


def test_a_server_that_does_not_isolate_says_single_user_mode(tmp_path: Path) -> None:
    config = {"nodes": [{"name": "n1", "cpu": 2, "memory": "2Gi"}], "isolation": {"mode": "off"}}
    with LocalServer(tmp_path / "home", config=config) as srv:
        wait_for(lambda: "single-user mode" in srv.log_tail(200), 30, "the announcement")
        assert "replicas run as this server's OS user" in srv.log_tail(200)
