"""Helpers for the end-to-end scheduler tests: a real ``plinth server`` subprocess per
test module (SQLite or PostgreSQL), real HTTP, the real local executor and processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _waiting import wait_for

from plinth.cli.local_server import LocalServer

ADMIN_TOKEN = "plt_integration-admin-token"
PY = sys.executable
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}


class Api:
    """A thin HTTP client for one token (real HTTP to the server subprocess)."""

    def __init__(self, server: LocalServer, token: str) -> None:
        self.c = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.c.request(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def job(self, jid: str) -> dict[str, Any]:
        return self.ok("GET", f"/api/v1/jobs/{jid}")

    def events(self, jid: str) -> list[dict[str, Any]]:
        return self.ok("GET", f"/api/v1/jobs/{jid}/events")

    def submit(self, name: str, code: str, cpu: float, memory: str = "256Mi", **spec: Any) -> str:
        body = {
            "name": name,
            "roles": {"main": {"resources": {"cpu": cpu, "memory": memory},
                               "command": [PY, "-c", code]}},
            **spec,
        }  # fmt: skip
        return self.ok("POST", "/api/v1/jobs", json=body)["id"]

    def wait_state(self, jid: str, states: set[str], timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(
            lambda: (j := self.job(jid))["state"] in states and j, timeout,
            f"job {jid} to reach {sorted(states)}",
        )  # fmt: skip

    def close(self) -> None:
        self.c.close()


def start_server(home: Path, config: dict[str, Any], db_url: str | None = None) -> LocalServer:
    env = {"PLINTH_DATABASE_URL": db_url} if db_url else None
    return LocalServer(home, config=config, admin_token=ADMIN_TOKEN, env=env).start()


@contextmanager
def serving(home: Path, config: dict[str, Any]) -> Iterator[LocalServer]:
    """A server for a test module; on the way out every live job is cancelled (nothing
    left behind) and the server stopped."""
    s = start_server(home, config)
    admin = Api(s, ADMIN_TOKEN)
    try:
        yield s
    finally:
        try:
            cancel_all(admin)
        finally:
            admin.close()
            s.stop()


def make_member(admin: Api, server: LocalServer, group: str, user: str, **group_body: Any) -> Api:
    """Create `group` (with `group_body`: quota, borrow_limit, ...) and member `user`."""
    admin.ok("POST", "/api/v1/groups", json={"name": group, **group_body})
    token = admin.ok("POST", "/api/v1/users", json={"name": user, "group": group})["token"]
    return Api(server, token)


def cancel_all(admin: Api) -> None:
    """Cancel every live job and wait until no replica runs (leave nothing behind)."""
    live = [j["id"] for j in admin.ok("GET", "/api/v1/jobs?limit=10000")
            if j["state"] not in FINAL]  # fmt: skip
    for jid in live:
        admin.ok("POST", f"/api/v1/jobs/{jid}/cancel")

    def stopped() -> bool:
        return all(
            r["state"] not in ("launching", "running")
            for jid in live
            for r in admin.ok("GET", f"/api/v1/jobs/{jid}/replicas")
        )

    wait_for(stopped, 30, "replicas to stop")
