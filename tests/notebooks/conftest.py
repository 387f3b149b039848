"""Fixtures for the notebook tests: the API app (tests/api/conftest.py's Plinth) with
second-scale notebook checks, and helpers to start a session and wait for it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _waiting import wait_for

from tests.api.conftest import FINAL, Plinth, running_plinth

NOTEBOOKS_CONFIG: dict[str, Any] = {
    "check_interval": 0.2,
    "start_timeout": "90s",
}


class Notebooks:
    """Notebook calls over a Plinth test app."""

    def __init__(self, p: Plinth) -> None:
        self.p = p

    def start(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        body.setdefault("resources", {"cpu": 0.5, "memory": "256Mi"})
        body.setdefault("name", f"nb-{secrets.token_hex(2)}")
        r = self.p.c.post("/api/v1/notebooks", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()

    def get(self, headers: dict[str, str], nid: str) -> dict[str, Any]:
        r = self.p.c.get(f"/api/v1/notebooks/{nid}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def events(self, headers: dict[str, str], nid: str) -> list[dict[str, Any]]:
        r = self.p.c.get(f"/api/v1/notebooks/{nid}/events", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_ready(self, headers: dict[str, str], nid: str, timeout: float = 90) -> dict[str, Any]:
        def ready() -> Any:
            nb = self.get(headers, nid)
            assert nb["state"] not in FINAL, f"session ended: {nb['reason']}\n{nb['log_tail']}"
            return nb["ready"] and nb

        return wait_for(ready, timeout, f"notebook {nid} to be ready", interval=0.2)

    def wait_state(self, headers: dict[str, str], nid: str, states: set[str],
                   timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        return wait_for(lambda: (nb := self.get(headers, nid))["state"] in states and nb,
                        timeout, f"notebook {nid} to reach {sorted(states)}", interval=0.1)

    def stop_all(self) -> None:
        r = self.p.c.get("/api/v1/notebooks?limit=10000", headers=self.p.admin)
        live = [n["id"] for n in r.json() if n["state"] not in FINAL]
        for nid in live:
            self.p.c.post(f"/api/v1/notebooks/{nid}/stop", headers=self.p.admin)
        for nid in live:
            wait_for(lambda nid=nid: all(
                rep["state"] not in ("launching", "running") for rep in self._replicas(nid)),
                30, f"notebook {nid} to stop")  # fmt: skip

    def _replicas(self, nid: str) -> list[dict[str, Any]]:
        from plinth.store.models import Replica

        ctx = self.p.c.app.state.plinth
        with ctx.db.read() as s:
            return [{"state": r.state} for r in s.query(Replica).filter_by(workload_id=nid)]


def jupyter(nb: dict[str, Any], path: str, token: str | None = None) -> httpx.Response:
    """A request to the session's own jupyter-server."""
    headers = {"Authorization": f"token {token}"} if token is not None else {}
    base = nb["url"].removesuffix("/lab")
    return httpx.get(base + path, headers=headers, timeout=10, trust_env=False)


@pytest.fixture
def nbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Notebooks]:
    with running_plinth(tmp_path, monkeypatch, notebooks=NOTEBOOKS_CONFIG) as p:
        n = Notebooks(p)
        try:
            yield n
        finally:
            n.stop_all()
