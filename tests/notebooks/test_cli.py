"""``plinth notebook start|list|get|extend|stop|events`` with ``-o json``: the real
executable against a real server, and the SDK's ``client.notebooks``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plinth.cli.local_server import LocalServer
from plinth.client import Client, PlinthError
from tests.cli._helpers import ADMIN_TOKEN, make_team, plinth, plinth_json

pytestmark = pytest.mark.slow

CONFIG = {
    "nodes": [{"name": "n1", "cpu": 8, "memory": "16Gi", "gpu": 1}],
    "notebooks": {"check_interval": 0.2, "start_timeout": "90s"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    local = LocalServer(tmp_path_factory.mktemp("nb-home"), config=CONFIG,
                        admin_token=ADMIN_TOKEN).start()  # fmt: skip
    try:
        yield local
    finally:
        try:
            with Client(local.url, ADMIN_TOKEN) as c:
                for nb in c.notebooks.list(limit=1000):
                    if nb["state"] in ("pending", "admitted", "running"):
                        c.notebooks.stop(nb["id"])
        finally:
            local.stop()


def test_the_cli_starts_waits_for_lists_extends_and_stops_a_session(
    server: LocalServer, tmp_path: Path
) -> None:
    team = make_team(server, server.client_env(ADMIN_TOKEN), prefix="nbcli")
    nb = plinth_json(["notebook", "start", "--name", "lab", "--cpu", "0.5", "--memory", "256Mi",
                      "--idle-timeout", "1h", "--max-lifetime", "2h", "--wait"], team.env)
    assert isinstance(nb, dict)
    assert nb["state"] == "running" and nb["ready"] and nb["idle_timeout"] == 3600
    status = httpx.get(nb["url"].removesuffix("/lab") + "/api/status", trust_env=False,
                       headers={"Authorization": f"token {nb['token']}"})  # fmt: skip
    assert status.status_code == 200
    listed = plinth_json(["notebook", "list"], team.env)
    assert [n["id"] for n in listed] == [nb["id"]]  # type: ignore[union-attr]
    got = plinth_json(["notebook", "get", nb["id"]], team.env)
    assert got["token"] == nb["token"]  # type: ignore[index]
    table = plinth(["notebook", "get", nb["id"]], team.env)
    assert table.returncode == 0 and nb["id"] in table.stdout and "token=" in table.stdout
    longer = plinth_json(["notebook", "extend", nb["id"], "--by", "1h"], team.env)
    assert longer["max_lifetime"] == 3 * 3600  # type: ignore[index]
    over = plinth(["notebook", "extend", nb["id"], "--by", "30d"], team.env)
    assert over.returncode != 0 and "cap" in over.stderr
    stopped = plinth_json(["notebook", "stop", nb["id"]], team.env)
    assert stopped["state"] == "cancelled"  # type: ignore[index]
    log = plinth(["notebook", "logs", nb["id"]], team.env)
    assert log.returncode == 0 and "Jupyter" in log.stdout, log.stderr
    evs = plinth_json(["notebook", "events", nb["id"]], team.env)
    assert {"ready", "extended", "cancelled"} <= {e["type"] for e in evs}  # type: ignore[union-attr]


def test_the_cli_refuses_bad_input_with_a_message(server: LocalServer) -> None:
    team = make_team(server, server.client_env(ADMIN_TOKEN), prefix="nbbad")
    r = plinth(["notebook", "start", "--at", "+1h"], team.env)
    assert r.returncode != 0 and "--for" in r.stderr
    r = plinth(["notebook", "start", "--cpu", "64"], team.env)
    assert r.returncode != 0 and "cpu" in r.stderr, r.stderr
    r = plinth(["notebook", "start", "--idle-timeout", "soon"], team.env)
    assert r.returncode != 0 and "idle_timeout" in r.stderr, r.stderr
    r = plinth(["notebook", "get", "nb-000000000000"], team.env)
    assert r.returncode != 0 and "not found" in r.stderr
    assert json.loads(plinth(["notebook", "list", "-o", "json"], team.env).stdout) == []


def test_the_sdk_books_a_window(server: LocalServer) -> None:
    team = make_team(server, server.client_env(ADMIN_TOKEN), prefix="nbsdk")
    with Client(server.url, team.token) as c:
        nb = c.notebooks.start(resources={"cpu": 0.5, "memory": "256Mi"},
                               at="2099-01-01T10:00:00Z", duration="2h")  # fmt: skip
        assert nb["state"] == "pending"
        assert nb["window"]["start"].startswith("2099-01-01T10:00")
        with pytest.raises(PlinthError, match="not ready"):
            c.notebooks.wait_ready(nb["id"], timeout=0.5, poll_interval=0.1)
        assert c.notebooks.stop(nb["id"])["state"] == "cancelled"
        with pytest.raises(PlinthError, match="ended cancelled"):
            c.notebooks.wait_ready(nb["id"], timeout=5)
