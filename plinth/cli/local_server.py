"""A throwaway ``plinth server`` subprocess for tests, the demo and benchmarks.

    with LocalServer(tmp_path / "home", config={"nodes": [...]}) as server:
        env = server.client_env(server.admin_token())   # PLINTH_URL, PLINTH_TOKEN
        subprocess.run(["plinth", "job", "list"], env=env)

The server runs the real ``plinth`` executable with a fresh ``PLINTH_HOME``
on a free 127.0.0.1 port; its stdout and stderr go to ``HOME/server.log``.
It is ready once ``GET /healthz`` answers. Replicas of jobs still running at
:meth:`LocalServer.stop` outlive the server by design (they are re-adopted on
the next start), so callers finish or cancel their jobs first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import httpx
import yaml


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plinth_command() -> list[str]:
    """How to run ``plinth``: the console script beside this interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "plinth"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "plinth.cli.main"]


class LocalServer:
    """One ``plinth server`` process with its own home, port and log file.

    ``config`` (a dict) is written to ``HOME/config.yaml`` and passed with
    ``--config``. ``admin_token`` sets ``PLINTH_ADMIN_TOKEN``; without it the
    server generates one into ``HOME/admin.token``. ``env`` adds variables
    (e.g. ``PLINTH_DATABASE_URL``); ``PLINTH_URL``/``PLINTH_TOKEN`` of the
    caller's environment are not passed on.
    """

    def __init__(
        self,
        home: Path,
        *,
        config: dict[str, Any] | None = None,
        admin_token: str | None = None,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.config = config
        self.admin_token_value = admin_token
        self.extra_env = env or {}
        self.command = command or plinth_command()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "PLINTH_URL",
                "PLINTH_TOKEN",
                "PLINTH_CONFIG",
                "PLINTH_ADMIN_TOKEN",
                "PLINTH_DATABASE_URL",
            )
        }
        env["PLINTH_HOME"] = str(self.home)
        if self.admin_token_value:
            env["PLINTH_ADMIN_TOKEN"] = self.admin_token_value
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 90.0) -> Self:
        """Start the server and return once ``/healthz`` answers; raise with its log if not."""
        from plinth.config import make_private_dir

        make_private_dir(self.home)
        args = ["server", "--host", "127.0.0.1"]
        if self.config is not None:
            config_path = self.home / "config.yaml"
            config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
            args += ["--config", str(config_path)]
        for _ in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [*self.command, *args, "--port", str(self.port)],
                    env=self.server_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_healthy(timeout):
                return self
            if "address already in use" not in self.log_tail().lower():
                break
        self.stop()
        raise RuntimeError(
            f"plinth server did not become healthy at {self.url} within {timeout:g}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def _wait_healthy(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=2.0)
                if response.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def admin_token(self, timeout: float = 10.0) -> str:
        """The admin's token: the one given, else ``HOME/admin.token`` written at first start."""
        if self.admin_token_value:
            return self.admin_token_value
        path = self.home / "admin.token"
        deadline = time.monotonic() + timeout
        while not path.exists() or not path.read_text().strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server wrote no admin token to {path}")
            time.sleep(0.05)
        return path.read_text().strip()

    def client_env(self, token: str | None = None) -> dict[str, str]:
        """An environment for running the ``plinth`` CLI against this server as ``token``."""
        env = dict(os.environ)
        env["PLINTH_URL"] = self.url
        env.pop("PLINTH_TOKEN", None)
        if token:
            env["PLINTH_TOKEN"] = token
        return env

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM the server (SIGKILL after ``grace`` seconds); return its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
