"""A git remote that answers once and then hangs (issue 8: no blocking I/O in the loop).

The remote is a tiny local HTTP server speaking git's dumb protocol: it lists one ref
once (so a submit resolves it), then never answers again (so the checkout hangs).
While an admitted job's checkout hangs in a worker thread, other jobs are admitted,
cancelled and launched; a checkout or resolution past its timeout kills git's whole
process group, so no git process is left behind.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from plinth.artifacts.gitcode import GitError, checkout, resolve_ref

from .conftest import Plinth, _cancel_all, make_plinth, role, wait_for

COMMIT = "c0ffee" + "0" * 34


class HangingRemote:
    """Answers the first ref listing (and HEAD), then holds every request open until
    ``release()``. ``hanging`` counts requests being held."""

    def __init__(self, answers: int = 1) -> None:
        remote = self
        self.answers = answers
        self.hanging = 0
        self._release = threading.Event()
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/HEAD") and remote.answers >= 0:
                    return self._send(b"ref: refs/heads/main\n")
                with remote._lock:
                    answer = remote.answers > 0
                    remote.answers -= 1
                    if not answer:
                        remote.hanging += 1
                if answer:
                    return self._send(f"{COMMIT}\trefs/heads/main\n".encode())
                remote._release.wait(60)  # a remote that never answers

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/repo.git"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def remote() -> Iterator[HangingRemote]:
    r = HangingRemote()
    try:
        yield r
    finally:
        r.release()


def git_processes_for(url: str) -> list[int]:
    """Pids of live processes (not zombies) whose command line names `url`."""
    port = url.split(":")[2].split("/")[0]
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"127.0.0.1:{port}".encode() in cmd:
            out.append(int(pid))
    return out


def test_a_hung_checkout_times_out_and_leaves_no_git_process(
    remote: HangingRemote, tmp_path: Path
) -> None:
    assert resolve_ref(remote.url, "main", protocols=("http",)) == COMMIT
    with pytest.raises(GitError, match="took more than 1s"):
        checkout(remote.url, COMMIT, tmp_path / "code", timeout_s=1, protocols=("http",))
    assert remote.hanging >= 1  # it really hung
    assert git_processes_for(remote.url) == []  # git and git-remote-http were killed
    assert not (tmp_path / "code").exists()


def test_submit_time_resolution_is_bounded(tmp_path: Path) -> None:
    silent = HangingRemote(answers=-1)  # hangs from the first request
    try:
        with pytest.raises(GitError, match="took more than 1s"):
            resolve_ref(silent.url, "main", timeout_s=1, protocols=("http",))
        assert git_processes_for(silent.url) == []
    finally:
        silent.release()


@pytest.mark.parametrize("url", ["fd::7", "ext::sh -c touch% /tmp/pwned", "git://127.0.0.1:1/x"])
def test_only_allowed_transports(url: str) -> None:
    with pytest.raises(GitError):
        resolve_ref(url, "main", timeout_s=5)


def test_http_is_refused_unless_allowed(remote: HangingRemote) -> None:
    with pytest.raises(GitError, match="protocol is allowed"):
        resolve_ref(remote.url, "main", timeout_s=5)  # default: https, ssh, file
    assert remote.answers == 1  # git never even asked


@pytest.fixture
def plinth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plinth]:
    client, home = make_plinth(
        tmp_path, monkeypatch,
        code={"git_protocols": ["http", "file"], "git_timeout": "5s", "checkout_timeout": "60s"},
    )  # fmt: skip
    with client:
        p = Plinth(client, home)
        try:
            yield p
        finally:
            _cancel_all(p)


@pytest.mark.slow
def test_other_jobs_go_ahead_while_a_checkout_hangs(plinth: Plinth, remote: HangingRemote) -> None:
    h, _ = plinth.member()
    stuck = plinth.submit(h, {"main": role("print('never')")},
                          code={"git": remote.url, "ref": "main"})  # fmt: skip
    assert stuck["code"]["commit"] == COMMIT
    wait_for(lambda: remote.hanging >= 1, 20, "the checkout to reach the hung remote")
    # Meanwhile the loop admits, launches and cancels other work.
    quick = plinth.submit(h, {"main": role("print('done')")})
    sleeper = plinth.submit(h, {"main": role("import time; time.sleep(60)")})
    plinth.wait(h, sleeper["id"], {"running"})
    r = plinth.c.post(f"/api/v1/jobs/{sleeper['id']}/cancel", headers=h)
    assert r.status_code == 200, r.text
    assert plinth.wait(h, sleeper["id"])["state"] == "cancelled"
    assert plinth.wait(h, quick["id"])["state"] == "succeeded"
    # All of that happened while the checkout was still held by the remote.
    assert plinth.job(h, stuck["id"])["state"] == "admitted"
    assert remote.hanging >= 1 and git_processes_for(remote.url)
    # The remote lets go: the checkout fails, the job fails with the reason, no git left.
    remote.release()
    done = plinth.wait(h, stuck["id"])
    assert done["state"] == "failed" and "could not prepare the code" in done["reason"]
    wait_for(lambda: git_processes_for(remote.url) == [], 20, "git processes to end")
