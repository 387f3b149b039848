"""``plinth model register|list|get|versions|alias|history`` against a real server, through
the real executable (and so the SDK's ``Client.models``)."""

from __future__ import annotations

import json

import pytest
from cli._helpers import ADMIN_TOKEN, NODE, make_team, plinth, plinth_json

from plinth.cli.local_server import LocalServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    local = LocalServer(tmp_path_factory.mktemp("home"), config={"nodes": [NODE]},
                        admin_token=ADMIN_TOKEN).start()
    try:
        yield make_team(local, local.client_env(ADMIN_TOKEN))
    finally:
        local.stop()


def test_register_alias_and_read_back(team, trained, tmp_path):
    env = team.env
    v1 = plinth_json(["model", "register", "ctr", str(trained.v1)], env)
    v2 = plinth_json(["model", "register", "ctr", str(trained.v2)], env)
    assert (v1["version"], v2["version"]) == (1, 2)
    plain = plinth(["model", "register", "ctr", str(trained.v2)], env)
    assert plain.returncode == 0 and plain.stdout.strip() == "ctr@3"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text(json.dumps({"format": "plinth.model/v0"}))
    r = plinth(["model", "register", "ctr", str(broken)], env)
    assert r.returncode != 0 and "format 'plinth.model/v0'" in r.stderr
    assert "Traceback" not in r.stderr
    r = plinth(["model", "register", "ctr"], env)
    assert r.returncode != 0 and "--from-job" in r.stderr

    assert plinth_json(["model", "alias", "ctr", "production", "2"], env)["version"] == 2
    assert plinth_json(["model", "alias", "ctr", "production", "1"], env)["version"] == 1
    [m] = plinth_json(["model", "list"], env)
    assert (m["name"], m["latest_version"], m["aliases"]) == ("ctr", 3, {"production": 1})
    got = plinth_json(["model", "get", "ctr"], env)
    assert [v["aliases"] for v in got["versions"]] == [["production"], [], []]
    assert [v["version"] for v in plinth_json(["model", "versions", "ctr"], env)] == [1, 2, 3]
    moves = plinth_json(["model", "history", "ctr"], env)
    assert [(h["from_version"], h["to_version"]) for h in moves] == [(None, 2), (2, 1)]
    table = plinth(["model", "versions", "ctr"], env)
    assert table.returncode == 0 and "production" in table.stdout
    missing = plinth(["model", "get", "nope"], env)
    assert missing.returncode != 0 and "not found" in missing.stderr
