"""Fixtures for the API tests: a real app (TestClient) over a real SQLite database in a
fresh PLINTH_HOME, the real local executor and real subprocesses."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _waiting import wait_for
from fastapi.testclient import TestClient

from plinth.api.app import create_app
from plinth.config import ServerConfig

ADMIN_TOKEN = "plt_test-admin-token"
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
TEST_CONFIG: dict[str, Any] = {
    "nodes": [{"name": "n1", "cpu": 8, "memory": "16Gi", "gpu": 2}],
    "scheduler": {"poll_interval": 0.05},
    "jobs": {"grace": "1s", "retry_backoff": {"initial": 0.05, "factor": 2, "max": 0.2}},
    "uploads": {"max_packed": 64 * 1024, "max_unpacked": 256 * 1024, "max_files": 50},
}
PY = sys.executable


class Plinth:
    """A running app plus helpers: headers for the admin and for new members."""

    def __init__(self, client: TestClient, home: Path) -> None:
        self.c = client
        self.home = home
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def member(self, group: str | None = None) -> tuple[dict[str, str], str]:
        """A new user (in a new group unless `group` is given): (headers, group name)."""
        if group is None:
            group = f"g-{secrets.token_hex(3)}"
            r = self.c.post(
                "/api/v1/groups", json={"name": group, "quota": {"cpu": 8}}, headers=self.admin
            )
            assert r.status_code == 201, r.text
        r = self.c.post(
            "/api/v1/users",
            json={"name": f"u-{secrets.token_hex(3)}", "group": group},
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}, group

    def submit(self, headers: dict[str, str], roles: dict[str, Any], **spec: Any) -> dict[str, Any]:
        body = {"name": spec.pop("name", "t"), "roles": roles, **spec}
        r = self.c.post("/api/v1/jobs", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, headers: dict[str, str], job_id: str) -> dict[str, Any]:
        r = self.c.get(f"/api/v1/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def wait(
        self, headers: dict[str, str], job_id: str, states: set[str] = FINAL, timeout: float = 20.0
    ) -> dict[str, Any]:
        return wait_for(
            lambda: (j := self.job(headers, job_id))["state"] in states and j,
            timeout,
            f"job {job_id} to reach {sorted(states)}",
        )

    def events(self, headers: dict[str, str], job_id: str) -> list[dict[str, Any]]:
        r = self.c.get(f"/api/v1/jobs/{job_id}/events", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def log(
        self,
        headers: dict[str, str],
        job_id: str,
        role: str,
        replica: int,
        attempt: int | None = None,
    ) -> str:
        q = "" if attempt is None else f"?attempt={attempt}"
        r = self.c.get(f"/api/v1/jobs/{job_id}/logs/{role}/{replica}{q}", headers=headers)
        assert r.status_code == 200, r.text
        return r.text


def role(code: str, replicas: int = 1, cpu: float = 0.1, **extra: Any) -> dict[str, Any]:
    """A role running `python -c code`."""
    return {
        "replicas": replicas,
        "resources": {"cpu": cpu, "memory": "64Mi"},
        "command": [PY, "-c", code],
        **extra,
    }


def make_plinth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any):
    monkeypatch.setenv("PLINTH_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("PLINTH_DATABASE_URL", raising=False)
    cfg = ServerConfig.model_validate({**TEST_CONFIG, **overrides})
    home = tmp_path / "home"
    app = create_app(cfg, home=home)
    return TestClient(app), home


@contextmanager
def running_plinth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> Iterator[Plinth]:
    """A started app (config `overrides` on TEST_CONFIG); every job cancelled after."""
    client, home = make_plinth(tmp_path, monkeypatch, **overrides)
    with client:
        p = Plinth(client, home)
        try:
            yield p
        finally:
            _cancel_all(p)


@pytest.fixture
def plinth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plinth]:
    with running_plinth(tmp_path, monkeypatch) as p:
        yield p


def _cancel_all(p: Plinth) -> None:
    """Leave no replica running after a test."""
    r = p.c.get("/api/v1/jobs?limit=10000", headers=p.admin)
    live = [j["id"] for j in r.json() if j["state"] not in FINAL]
    for jid in live:
        p.c.post(f"/api/v1/jobs/{jid}/cancel", headers=p.admin)

    def ended() -> bool:
        return all(
            rep["state"] not in ("launching", "running")
            for jid in live
            for rep in p.c.get(f"/api/v1/jobs/{jid}/replicas", headers=p.admin).json()
        )

    wait_for(ended, 15, "replicas to stop")
