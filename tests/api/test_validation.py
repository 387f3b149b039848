"""Bad input gets a 4xx naming the field and what is allowed; nothing is written."""

from __future__ import annotations

import pytest

from .conftest import Plinth, role

GOOD = {"name": "ok", "roles": {"main": {"command": ["python", "-c", "1"]}}}


@pytest.mark.parametrize(
    ("patch", "field", "hint"),
    [
        ({"name": "Bad_Name"}, "name", "pattern"),
        ({"roles": {}}, "roles", "at least 1"),
        ({"roles": {"main": {"command": []}}}, "roles.main.command", "at least 1"),
        (
            {"roles": {"main": {"command": ["x"], "replicas": 0}}},
            "roles.main.replicas",
            "greater than or equal to 1",
        ),
        (
            {"roles": {"main": {"command": ["x"], "replica": 2}}},
            "roles.main",
            "allowed: replicas, resources, command, env",
        ),
        (
            {"roles": {"main": {"command": ["x"], "resources": {"memory": "4GB"}}}},
            "roles.main.resources.memory",
            "'512Mi', '4Gi'",
        ),
        (
            {"roles": {"main": {"command": ["x"], "resources": {"cpu": -1}}}},
            "roles.main.resources.cpu",
            "greater than or equal to 0",
        ),
        ({"max_runtime": "2 hours"}, "max_runtime", "'90s', '30m', '2h', '1d'"),
        ({"retries": -1}, "retries", "greater than or equal to 0"),
        ({"code": {"file": "abc"}}, "code", "pattern"),
        ({"colour": "red"}, "body", "allowed: name, group, max_runtime"),
        ({"roles": {"Main Role": {"command": ["x"]}}}, "roles.Main Role", "pattern"),
    ],
)
def test_spec_errors_name_the_field(plinth: Plinth, patch: dict, field: str, hint: str) -> None:
    h, _ = plinth.member()
    r = plinth.c.post("/api/v1/jobs", headers=h, json={**GOOD, **patch})
    assert r.status_code == 422, r.text
    msgs = " | ".join(d["msg"] for d in r.json()["detail"])
    assert any(d["msg"].startswith(field) for d in r.json()["detail"]), msgs
    assert hint in msgs, msgs
    assert plinth.c.get("/api/v1/jobs", headers=h).json() == []


def test_service_level_refusals(plinth: Plinth) -> None:
    h, _ = plinth.member()
    cases = [
        ({"code": {"file": "0" * 64}}, "code.file: no uploaded file"),
        ({"roles": {"main": {"command": ["x"], "resources": {"gpu": 3}}}}, "can never start"),
        ({"max_runtime": "100d"}, "over this server's limit"),
    ]
    for patch, msg in cases:
        r = plinth.c.post("/api/v1/jobs", headers=h, json={**GOOD, **patch})
        assert r.status_code == 422, r.text
        assert msg in r.json()["detail"], r.json()
    # A local repository: a member is refused before anything is read (no roots are
    # configured); an admin may use local paths, and a missing one is a 422.
    bad_git = {**GOOD, "code": {"git": "/nonexistent/repo", "ref": "main"}}
    r = plinth.c.post("/api/v1/jobs", headers=h, json=bad_git)
    assert r.status_code == 403 and "code.git_local_roots" in r.json()["detail"], r.text
    r = plinth.c.post("/api/v1/jobs", headers=plinth.admin, json=bad_git)
    assert r.status_code == 422 and "code.git" in r.json()["detail"], r.text
    assert plinth.c.get("/api/v1/jobs", headers=h).json() == []


def test_non_json_values_are_refused_not_500(plinth: Plinth) -> None:
    h, _ = plinth.member()
    body = '{"name": "x", "params": {"a": NaN}, "roles": {"main": {"command": ["x"]}}}'
    r = plinth.c.post(
        "/api/v1/jobs", headers={**h, "Content-Type": "application/json"}, content=body
    )
    assert r.status_code == 422, r.text
    body = '{"name": "x", "params": {"a": "\\ud800"}, "roles": {"main": {"command": ["x"]}}}'
    r = plinth.c.post(
        "/api/v1/jobs", headers={**h, "Content-Type": "application/json"}, content=body
    )
    assert r.status_code == 422, r.text


def test_unknown_ids_are_404_and_bad_queries_422(plinth: Plinth) -> None:
    h, _ = plinth.member()
    assert plinth.c.get("/api/v1/jobs/job-doesnotexist", headers=h).status_code == 404
    assert plinth.c.get("/api/v1/jobs?state=bogus", headers=h).status_code == 422
    assert plinth.c.get("/api/v1/jobs?limit=0", headers=h).status_code == 422
    job = plinth.submit(h, {"main": role("print(1)")})
    plinth.wait(h, job["id"])
    r = plinth.c.get(f"/api/v1/jobs/{job['id']}/logs/main/7", headers=h)
    assert r.status_code == 404 and "main-7" in r.json()["detail"]
    r = plinth.c.get(f"/api/v1/jobs/{job['id']}/logs/main/0?attempt=3", headers=h)
    assert r.status_code == 404


def test_deeply_nested_params_are_a_422_naming_the_field(plinth: Plinth) -> None:
    h, _ = plinth.member()
    deep: dict = {}
    for _ in range(300):
        deep = {"a": deep}
    body = {"name": "t", "roles": {"main": role("1")}, "params": deep}
    r = plinth.c.post("/api/v1/jobs", json=body, headers=h)
    assert r.status_code == 422, r.text
    assert "params" in r.text and "32 levels" in r.text
    ok: dict = {}
    for _ in range(31):
        ok = {"a": ok}
    body["params"] = ok
    assert plinth.c.post("/api/v1/jobs", json=body, headers=h).status_code == 201


def test_oversized_params_env_or_command_are_a_422(plinth: Plinth) -> None:
    h, _ = plinth.member()
    big = "x" * (20 * 1024)  # each piece is allowed; four together are over 64 KiB
    cmd = role("1")
    cmd["command"] += [big] * 4
    for body in (
        {"name": "t", "roles": {"main": role("1")}, "params": {str(i): big for i in range(4)}},
        {"name": "t", "roles": {"main": role("1", env={f"B{i}": big for i in range(4)})}},
        {"name": "t", "roles": {"main": cmd}},
    ):
        r = plinth.c.post("/api/v1/jobs", json=body, headers=h)
        assert r.status_code == 422, r.text[:300]
        assert "65536" in r.text and "params, env and command" in r.text
