"""Fixtures for the console's tests: a real app over SQLite (TestClient) and helpers to
log in through the login form, as a browser would."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import ADMIN_TOKEN, make_plinth

ORIGIN = "http://testserver"


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(c: TestClient, token: str) -> str:
    """Log `c` in with `token` through the form; return the session's CSRF token."""
    page = c.get("/login")
    r = c.post("/login", data={"csrf": csrf_of(page.text), "token": token, "next": "/"},
               headers={"Origin": ORIGIN}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    return csrf_of(c.get("/jobs/new").text)


class Console:
    def __init__(self, client: TestClient, home: Path) -> None:
        self.c = client
        self.home = home
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def member(self, group: str | None = None) -> tuple[str, str]:
        """A new user in a new group (or `group`): (token, group)."""
        if group is None:
            group = f"g-{secrets.token_hex(3)}"
            r = self.c.post("/api/v1/groups", json={"name": group, "quota": {"cpu": 4}},
                            headers=self.admin)  # fmt: skip
            assert r.status_code == 201, r.text
        r = self.c.post("/api/v1/users", json={"name": f"u-{secrets.token_hex(3)}",
                                               "group": group}, headers=self.admin)  # fmt: skip
        assert r.status_code == 201, r.text
        return r.json()["token"], group

    def browser(self) -> TestClient:
        """A second client (its own cookie jar) on the same app."""
        return TestClient(self.c.app)


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    client, home = make_plinth(tmp_path, monkeypatch)
    with client:
        yield Console(client, home)
