"""The whole control plane on PostgreSQL: bootstrap, submit, run, fail, logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from plinth.api.app import create_app
from plinth.config import ServerConfig

from .conftest import ADMIN_TOKEN, TEST_CONFIG, Plinth, role

pytestmark = pytest.mark.postgres


def test_job_lifecycle_on_postgres(
    pg_schemas: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLINTH_ADMIN_TOKEN", ADMIN_TOKEN)
    app = create_app(
        ServerConfig.model_validate(TEST_CONFIG), home=tmp_path / "home", db_url=pg_schemas()
    )
    with TestClient(app) as client:
        p = Plinth(client, tmp_path / "home")
        h, group = p.member()
        ok = p.submit(h, {"main": role("print('on postgres')", 2)}, params={"x": "é"})
        bad = p.submit(h, {"main": role("import sys; sys.exit(4)")}, retries=1)
        assert p.wait(h, ok["id"])["state"] == "succeeded"
        assert p.log(h, ok["id"], "main", 1) == "on postgres\n"
        failed = p.wait(h, bad["id"])
        assert failed["state"] == "failed" and failed["failures"] == 2
        assert [e["type"] for e in p.events(h, bad["id"])].count("retrying") == 1
        assert {j["id"] for j in client.get("/api/v1/jobs", headers=h).json()} == {
            ok["id"],
            bad["id"],
        }
        assert (
            client.post("/api/v1/groups", json={"name": group}, headers=p.admin).status_code == 409
        )
