"""Quota expansions, reservations, the queue, explain and group status through the
real ``plinth`` executable against the session's real server."""

from __future__ import annotations

import sys
import time

from plinth.cli.local_server import LocalServer
from plinth.client import Client

from ._helpers import ADMIN_TOKEN, plinth, plinth_json, unique

NO_BORROW = "cpu=0,memory=0,gpu=0"


def _team(admin_env: dict[str, str], server: LocalServer, quota: str = "cpu=1,memory=1Gi"):
    group, user = unique("q"), unique("q-user")
    plinth_json(["group", "create", group, "--quota", quota, "--borrow-limit", NO_BORROW],
                admin_env)  # fmt: skip
    token = plinth_json(["user", "create", user, "--group", group], admin_env)["token"]
    return group, user, server.client_env(token), token


def test_quota_expand_and_list(admin_env: dict[str, str], server: LocalServer) -> None:
    group, user, env, _ = _team(admin_env, server)
    e = plinth_json(["quota", "expand", "--group", group, "--add", "cpu=2,memory=1Gi",
                     "--until", "+1h", "--reason", "deadline"], admin_env)  # fmt: skip
    assert e["group"] == group and e["add"]["cpu"] == 2 and e["status"] == "active"
    later = plinth_json(["quota", "expand", "--user", user, "--add", "gpu=1", "--from", "+1d",
                         "--until", "+2d", "--reason", "booked"], admin_env)  # fmt: skip
    assert later["user"] == user and later["status"] == "scheduled"
    mine = plinth_json(["quota", "list"], env)  # a member sees its group's and its own
    assert {x["id"] for x in mine} == {e["id"], later["id"]}
    active = plinth_json(["quota", "list", "--active"], env)
    assert [x["id"] for x in active] == [e["id"]]
    table = plinth(["quota", "list"], env)
    assert table.returncode == 0 and "deadline" in table.stdout and "scheduled" in table.stdout
    g = plinth_json(["group", "get", group], env)
    assert g["status"]["nominal"]["cpu"] == 3 and g["expansions"][0]["id"] == e["id"]

    for args, msg in [
        (["--group", group, "--user", user], "exactly one of --group or --user"),
        (["--group", group, "--until", "tomorrow"], "--until: 'tomorrow' is not a time"),
    ]:
        full = ["quota", "expand", "--add", "gpu=1", "--until", "+1h", "--reason", "r", *args]
        r = plinth(full, admin_env)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
    r = plinth(["quota", "expand", "--group", group, "--add", "gpu=1", "--until", "+1h",
                "--reason", "r"], env)  # fmt: skip
    assert r.returncode == 1 and "admin" in r.stderr


def test_reservation_create_list_delete(admin_env: dict[str, str], server: LocalServer) -> None:
    group, _, env, _ = _team(admin_env, server)
    r = plinth_json(["reservation", "create", "--group", group, "--resources", "cpu=1,memory=1Gi",
                     "--from", "+1h", "--until", "+2h", "--reason", "notebook"], admin_env)  # fmt: skip
    assert r["id"].startswith("rsv-") and r["resources"]["cpu"] == 1 and r["node"] is None
    assert r["id"] in {x["id"] for x in plinth_json(["reservation", "list"], env)}
    bad = plinth(["reservation", "create", "--group", group, "--resources", "cpu=999",
                  "--from", "now", "--until", "+1h"], admin_env)  # fmt: skip
    assert bad.returncode == 1 and "no node is large enough" in bad.stderr
    done = plinth(["reservation", "delete", r["id"]], admin_env)
    assert done.returncode == 0
    assert r["id"] not in {x["id"] for x in plinth_json(["reservation", "list"], admin_env)}


def test_queue_and_explain(admin_env: dict[str, str], server: LocalServer) -> None:
    group, _, env, token = _team(admin_env, server)
    spec = {
        "name": "too-big",
        "roles": {
            "main": {
                "resources": {"cpu": 2, "memory": "64Mi"},
                "command": [sys.executable, "-c", "1"],
            }
        },
    }
    with Client(server.url, token) as c:
        job = c.jobs.submit(spec)
        deadline = time.monotonic() + 20
        while not c.jobs.get(job["id"])["reason"].startswith("waiting"):
            assert time.monotonic() < deadline, "the job never got a waiting reason"
            time.sleep(0.05)
    try:
        entries = plinth_json(["queue"], env)
        assert [x["id"] for x in entries] == [job["id"]]  # only its own group's entries
        assert entries[0]["score"]["factors"]["aging"] >= 0 and entries[0]["outcome"] == "wait"
        everything = plinth_json(["queue", "--limit", "1000"], admin_env)
        assert job["id"] in {x["id"] for x in everything}
        table = plinth(["queue"], env)
        assert table.returncode == 0 and job["id"] in table.stdout
        text = plinth(["job", "explain", job["id"]], env)
        assert text.returncode == 0, text.stderr
        assert f"group {group}" in text.stdout and "waits:" in text.stdout
        assert "score" in text.stdout and "cpu" in text.stdout
        ex = plinth_json(["job", "explain", job["id"]], env)
        assert ex["state"] == "pending" and ex["position"] >= 1 and group in ex["reason"]
    finally:
        with Client(server.url, ADMIN_TOKEN) as c:
            c.jobs.cancel(job["id"])


def test_group_caps_and_status(admin_env: dict[str, str]) -> None:
    name = unique("caps")
    g = plinth_json(["group", "create", name, "--quota", "cpu=2", "--max-job", "gpu=1",
                     "--max-runtime", "2h", "--max-workloads-per-user", "3"], admin_env)  # fmt: skip
    assert g["max_job"] == {"gpu": 1} and g["max_runtime"] == 7200
    assert g["max_workloads_per_user"] == 3 and g["status"]["used"]["cpu"] == 0
    g = plinth_json(["group", "update", name, "--max-workloads-per-user", "5"], admin_env)
    assert g["max_workloads_per_user"] == 5 and g["max_job"] == {"gpu": 1}
    user = unique("capped")
    made = plinth_json(["user", "create", user, "--group", name, "--cap", "cpu=1"], admin_env)
    assert made["user"]["cap"]["cpu"] == 1
    listed = {x["name"]: x for x in plinth_json(["group", "list"], admin_env)}
    assert listed[name]["users"] == [
        {"name": user, "cap": {"cpu": 1, "memory": None, "gpu": None},  # not capped
         "used": {"cpu": 0, "memory": 0, "gpu": 0}}
    ]  # fmt: skip
    table = plinth(["group", "list"], admin_env)
    assert table.returncode == 0 and "BORROWED" in table.stdout and name in table.stdout


def test_quota_revoke(admin_env: dict[str, str], server: LocalServer) -> None:
    group, _, env, _ = _team(admin_env, server)
    e = plinth_json(["quota", "expand", "--group", group, "--add", "cpu=2", "--until", "+1h",
                     "--reason", "launch"], admin_env)  # fmt: skip
    r = plinth(["quota", "revoke", str(e["id"]), "--reason", "launch moved"], env)
    assert r.returncode == 1 and "admin" in r.stderr  # members may not
    r = plinth(["quota", "revoke", str(e["id"]), "--reason", " "], admin_env)
    assert r.returncode == 2 and "--reason" in r.stderr
    out = plinth_json(["quota", "revoke", str(e["id"]), "--reason", "launch moved"], admin_env)
    assert out["status"] == "revoked" and out["revoked_by"] == "admin"
    assert out["granted_by"] == "admin" and out["revoke_reason"] == "launch moved"
    listed = {x["id"]: x for x in plinth_json(["quota", "list"], env)}
    assert listed[e["id"]]["status"] == "revoked"
    g = plinth_json(["group", "get", group], env)
    assert g["status"]["nominal"]["cpu"] == 1 and g["status"]["expansion"]["cpu"] == 0
    again = plinth(["quota", "revoke", str(e["id"]), "--reason", "x"], admin_env)
    assert again.returncode == 1 and "already revoked" in again.stderr


def test_effective_limits_shown(admin_env: dict[str, str]) -> None:
    group, user = unique("lim"), unique("lim-user")
    plinth_json(["group", "create", group, "--quota", "cpu=2,memory=2Gi",
                 "--borrow-limit", "cpu=1"], admin_env)  # fmt: skip
    plinth_json(["user", "create", user, "--group", group, "--cap", "cpu=1"], admin_env)
    u = plinth(["user", "get", user], admin_env)
    assert "cpu=1 memory=no cap gpu=no cap" in u.stdout, u.stdout
    assert plinth_json(["user", "get", user], admin_env)["cap"] == {
        "cpu": 1.0, "memory": None, "gpu": None}
    g = plinth(["group", "get", group], admin_env)
    assert "cpu=1 memory=no cap gpu=no cap" in g.stdout, g.stdout
    assert "none (lends all its idle quota)" in g.stdout


def test_simulate_the_servers_history(admin_env: dict[str, str], server: LocalServer,
                                      tmp_path) -> None:
    group, _, env, _ = _team(admin_env, server)
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: h\nroles:\n  main:\n    resources: {{cpu: 0.5, memory: 64Mi}}\n"
                    f"    command: [{sys.executable}, -c, 'print(1)']\n")
    job = plinth_json(["job", "submit", str(spec), "--wait"], env)
    assert job["state"] == "succeeded"
    out = plinth_json(["scheduler", "simulate", "--history", "1h"], admin_env)
    figures = out["policies"]["default"]
    assert out["workloads"] >= 1 and figures["never_started"] == 0
    assert group in figures["wait_p50_s"]
    r = plinth(["scheduler", "simulate", "--history", "1h"], env)  # members: no history
    assert r.returncode == 1 and "admin" in r.stderr
