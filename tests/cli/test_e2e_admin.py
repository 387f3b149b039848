"""Groups, users, nodes and identity through the real ``plinth`` executable."""

from __future__ import annotations

import json

from plinth.cli.local_server import LocalServer

from ._helpers import NODE, Team, plinth, plinth_json, unique


def test_group_lifecycle(admin_env: dict[str, str]) -> None:
    name = unique("grp")
    created = plinth_json(
        [
            "group",
            "create",
            name,
            "--quota",
            "cpu=8,memory=32Gi,gpu=2",
            "--borrow-limit",
            "cpu=4",
            "--lend-limit",
            "cpu=2",
        ],
        admin_env,
    )
    assert created["name"] == name
    assert created["quota"] == {"cpu": 8, "memory": 32768, "gpu": 2}
    assert created["borrow_limit"]["cpu"] == 4 and created["lend_limit"]["cpu"] == 2
    assert name in [g["name"] for g in plinth_json(["group", "list"], admin_env)]
    table = plinth(["group", "get", name], admin_env)
    assert "cpu=8 memory=32Gi gpu=2" in table.stdout

    duplicate = plinth(["group", "create", name, "--quota", "cpu=1"], admin_env)
    assert duplicate.returncode == 1 and "HTTP 409" in duplicate.stderr

    updated = plinth_json(["group", "update", name, "--quota", "cpu=16"], admin_env)
    assert updated["quota"]["cpu"] == 16

    deleted = plinth(["group", "delete", name], admin_env)
    assert deleted.returncode == 0, deleted.stderr
    gone = plinth(["group", "get", name], admin_env)
    assert gone.returncode == 1 and "HTTP 404" in gone.stderr


def test_group_with_users_cannot_be_deleted(team: Team, admin_env: dict[str, str]) -> None:
    result = plinth(["group", "delete", team.group], admin_env)
    assert result.returncode == 1 and "HTTP 409" in result.stderr


def test_user_create_json_and_tables(admin_env: dict[str, str], server: LocalServer) -> None:
    group = unique("ugrp")
    plinth_json(["group", "create", group, "--quota", "cpu=2"], admin_env)
    name = unique("bob")
    created = plinth_json(["user", "create", name, "--group", group, "--cap", "cpu=1"], admin_env)
    assert set(created) >= {"token", "user"}
    assert created["user"]["name"] == name and created["user"]["admin"] is False
    assert created["user"]["cap"]["cpu"] == 1

    me = plinth_json(["whoami"], server.client_env(created["token"]))
    assert me["name"] == name and me["group"] == group
    assert name in plinth(["whoami"], server.client_env(created["token"])).stdout

    assert plinth_json(["user", "get", name], admin_env)["group"] == group
    assert name in [u["name"] for u in plinth_json(["user", "list"], admin_env)]
    assert name in plinth(["user", "list"], admin_env).stdout

    fresh = plinth(["user", "token", name], admin_env)
    assert fresh.returncode == 0
    assert plinth_json(["whoami"], server.client_env(fresh.stdout.strip()))["name"] == name


def test_member_cannot_administer(team: Team) -> None:
    result = plinth(["group", "create", unique("nope"), "--quota", "cpu=1"], team.env)
    assert result.returncode == 1
    assert "HTTP 403" in result.stderr and "admin" in result.stderr
    users = plinth(["user", "create", unique("eve"), "--group", team.group], team.env)
    assert users.returncode == 1 and "HTTP 403" in users.stderr


def test_user_in_missing_group_is_an_error(admin_env: dict[str, str]) -> None:
    result = plinth(["user", "create", unique("lost"), "--group", "no-such-group"], admin_env)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr


def test_node_list_shows_the_declared_node(team: Team) -> None:
    nodes = plinth_json(["node", "list"], team.env)
    assert [n["name"] for n in nodes] == [NODE["name"]]
    assert nodes[0]["capacity"] == {
        "cpu": NODE["cpu"],
        "memory": NODE["memory"],
        "gpu": NODE["gpu"],
    }
    table = plinth(["node", "list"], team.env)
    assert "cpu=8 memory=16Gi gpu=2" in table.stdout


def test_json_output_is_only_json(team: Team) -> None:
    result = plinth(["group", "list", "-o", "json"], team.env)
    assert result.returncode == 0
    assert [g["name"] for g in json.loads(result.stdout)] == [team.group]
