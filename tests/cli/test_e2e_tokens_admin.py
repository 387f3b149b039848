"""``plinth token`` and ``plinth admin`` against a real server: named tokens, revoke,
disabling users, the audit log, gc."""

from __future__ import annotations

from plinth.cli.local_server import LocalServer

from ._helpers import Team, plinth, plinth_json


def test_token_create_list_revoke(server: LocalServer, team: Team) -> None:
    made = plinth_json(["token", "create", "laptop", "--expires", "30d"], team.env)
    assert made["name"] == "laptop" and made["expires_at"] and made["token"].startswith("plt_")
    env = server.client_env(made["token"])
    assert plinth(["whoami"], env).returncode == 0
    listed = plinth_json(["token", "list"], team.env)
    assert any(t["id"] == made["id"] and t["state"] == "active" for t in listed)
    assert "plt_" not in plinth(["token", "list"], team.env).stdout  # never the secrets
    assert plinth(["token", "revoke", str(made["id"])], team.env).returncode == 0
    r = plinth(["whoami"], env)
    assert r.returncode == 1 and "revoked" in r.stderr, r.stderr
    r = plinth(["token", "create", "x", "--expires", "soon"], team.env)
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_admin_disable_audit_gc(server: LocalServer, admin_env: dict, team: Team) -> None:
    done = plinth_json(["admin", "disable-user", team.user], admin_env)
    assert done["disabled"] is True and done["tokens_revoked"] >= 1
    assert plinth(["whoami"], team.env).returncode == 1
    records = plinth_json(["admin", "audit", "--action", "user."], admin_env)
    assert any(r["action"] == "user.disable" and r["target"] == f"user:{team.user}"
               for r in records)  # fmt: skip
    assert plinth(["admin", "audit"], team.env).returncode == 1
    report = plinth_json(["admin", "gc"], admin_env)
    assert set(report) == {"workloads", "uploads", "code_versions", "bytes_freed"}
    assert plinth(["admin", "enable-user", team.user], admin_env).returncode == 0
