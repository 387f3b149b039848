"""401 without a valid token, 403 for admin-only actions, 404 across groups."""

from __future__ import annotations

import pytest

from .conftest import Plinth, role, wait_for

ENDPOINTS = [
    ("get", "/api/v1/jobs/{id}"),
    ("get", "/api/v1/jobs/{id}/events"),
    ("get", "/api/v1/jobs/{id}/replicas"),
    ("get", "/api/v1/jobs/{id}/logs/main/0"),
    ("post", "/api/v1/jobs/{id}/cancel"),
    ("post", "/api/v1/jobs/{id}/rerun"),
]


@pytest.fixture
def two_groups(plinth: Plinth) -> tuple[dict, dict, dict, str]:
    a, _ = plinth.member()
    a2, _ = plinth.member()
    b, _ = plinth.member()
    job = plinth.submit(b, {"main": role("import time; print('secret'); time.sleep(30)")})
    plinth.wait(b, job["id"], {"running"})
    return a, a2, b, job["id"]


def test_no_or_bad_token_is_401(plinth: Plinth) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        for path in ("/api/v1/whoami", "/api/v1/jobs", "/api/v1/groups", "/api/v1/nodes"):
            r = plinth.c.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert isinstance(r.json()["detail"], str)
    assert plinth.c.get("/healthz").status_code == 200


def test_other_groups_jobs_are_invisible(plinth: Plinth, two_groups) -> None:
    a, _, b, jid = two_groups
    for method, path in ENDPOINTS:
        r = getattr(plinth.c, method)(path.format(id=jid), headers=a)
        assert r.status_code == 404, (path, r.text)
        assert "not found" in r.json()["detail"]
    assert plinth.c.get("/api/v1/jobs", headers=a).json() == []
    # the job was not cancelled by the attempt, and no rerun was made
    assert plinth.job(b, jid)["state"] == "running"
    assert len(plinth.c.get("/api/v1/jobs", headers=b).json()) == 1
    # its owner and the admin do see it
    assert plinth.c.get(f"/api/v1/jobs/{jid}/logs/main/0", headers=plinth.admin).status_code == 200
    assert [j["id"] for j in plinth.c.get("/api/v1/jobs", headers=plinth.admin).json()] == [jid]


def test_same_group_members_share_jobs(plinth: Plinth) -> None:
    a, group = plinth.member()
    a2, _ = plinth.member(group)
    job = plinth.submit(a, {"main": role("print(1)")})
    assert plinth.job(a2, job["id"])["id"] == job["id"]


def test_members_cannot_administer(plinth: Plinth) -> None:
    a, group = plinth.member()
    cases = [
        ("post", "/api/v1/groups", {"name": "x1"}),
        ("patch", f"/api/v1/groups/{group}", {"quota": {"cpu": 100}}),
        ("delete", f"/api/v1/groups/{group}", None),
        ("post", "/api/v1/users", {"name": "x2", "group": group, "admin": True}),
        ("get", "/api/v1/users", None),
        ("post", "/api/v1/users/admin/tokens", None),
    ]
    for method, path, body in cases:
        kw = {"json": body} if body is not None else {}
        r = plinth.c.request(method.upper(), path, headers=a, **kw)
        assert r.status_code == 403, (path, r.text)
    # a member submitting into another group is refused
    r = plinth.c.post(
        "/api/v1/jobs",
        headers=a,
        json={"name": "x", "group": "default", "roles": {"main": role("1")}},
    )
    assert r.status_code == 403 and "own group" in r.json()["detail"]
    # but may read its own group and mint its own tokens
    assert plinth.c.get(f"/api/v1/groups/{group}", headers=a).status_code == 200
    assert plinth.c.get("/api/v1/groups/default", headers=a).status_code == 404
    me = plinth.c.get("/api/v1/whoami", headers=a).json()["name"]
    tok = plinth.c.post(f"/api/v1/users/{me}/tokens", headers=a).json()["token"]
    assert (
        plinth.c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {tok}"}).json()["name"]
        == me
    )


def test_admin_manages_groups_and_users(plinth: Plinth) -> None:
    H = plinth.admin
    r = plinth.c.post(
        "/api/v1/groups",
        headers=H,
        json={
            "name": "ads",
            "quota": {"cpu": 8, "memory": "32Gi", "gpu": 2},
            "borrow_limit": {"cpu": 4},
        },
    )
    assert r.status_code == 201 and r.json()["quota"] == {"cpu": 8.0, "memory": 32768, "gpu": 2}
    assert plinth.c.post("/api/v1/groups", headers=H, json={"name": "ads"}).status_code == 409
    r = plinth.c.patch("/api/v1/groups/ads", headers=H, json={"lend_limit": {"cpu": 2}})
    assert r.json()["lend_limit"]["cpu"] == 2 and r.json()["borrow_limit"]["cpu"] == 4
    r = plinth.c.post(
        "/api/v1/users", headers=H, json={"name": "bob", "group": "ads", "cap": {"cpu": 2}}
    )
    assert r.status_code == 201 and r.json()["token"].startswith("plt_")
    assert (
        plinth.c.post("/api/v1/users", headers=H, json={"name": "bob", "group": "ads"}).status_code
        == 409
    )
    assert (
        plinth.c.post("/api/v1/users", headers=H, json={"name": "eve", "group": "nope"}).status_code
        == 404
    )
    assert plinth.c.delete("/api/v1/groups/ads", headers=H).status_code == 409  # has a user
    assert plinth.c.post("/api/v1/groups", headers=H, json={"name": "tmp"}).status_code == 201
    assert plinth.c.delete("/api/v1/groups/tmp", headers=H).status_code == 204
    assert plinth.c.get("/api/v1/groups/tmp", headers=H).status_code == 404
    names = [u["name"] for u in plinth.c.get("/api/v1/users", headers=H).json()]
    assert names == ["admin", "bob"]


def test_workload_scoped_token_reaches_only_its_workload(plinth: Plinth) -> None:
    a, _ = plinth.member()
    other = plinth.submit(a, {"main": role("import time; time.sleep(30)")})
    # The job stays running: a workload's token works only while the workload lives.
    code = "import os, time; print(os.environ['PLINTH_TOKEN'], flush=True); time.sleep(30)"
    job = plinth.submit(a, {"main": role(code)})
    token = wait_for(lambda: plinth.log(a, job["id"], "main", 0).strip(), 20, "the token")
    t = {"Authorization": f"Bearer {token}"}
    who = plinth.c.get("/api/v1/whoami", headers=t).json()
    assert who["workload_id"] == job["id"] and who["admin"] is False
    assert plinth.c.get(f"/api/v1/jobs/{job['id']}", headers=t).status_code == 200
    assert plinth.c.get(f"/api/v1/jobs/{other['id']}", headers=t).status_code == 404
    assert [j["id"] for j in plinth.c.get("/api/v1/jobs", headers=t).json()] == [job["id"]]
    assert (
        plinth.c.post(
            "/api/v1/jobs", headers=t, json={"name": "x", "roles": {"main": role("1")}}
        ).status_code
        == 403
    )
    assert plinth.c.get("/api/v1/groups", headers=t).status_code == 403
    # tokens are stored hashed: the plaintext is nowhere in the database file
    db = (plinth.home / "plinth.db").read_bytes() + (plinth.home / "plinth.db-wal").read_bytes()
    assert token.encode() not in db and b"plt_test-admin-token" not in db


def test_scoped_token_sees_its_job_submitted_by_an_admin_into_another_group(
    plinth: Plinth,
) -> None:
    _, group = plinth.member()  # the admin is in `default`; the job goes to `group`
    code = "import os, time; print(os.environ['PLINTH_TOKEN'], flush=True); time.sleep(30)"
    job = plinth.submit(plinth.admin, {"main": role(code)}, group=group)
    token = wait_for(
        lambda: plinth.log(plinth.admin, job["id"], "main", 0).strip(), 20, "the token"
    )
    t = {"Authorization": f"Bearer {token}"}
    assert plinth.c.get(f"/api/v1/jobs/{job['id']}", headers=t).status_code == 200
    assert plinth.c.get(f"/api/v1/jobs/{job['id']}/events", headers=t).status_code == 200
    assert [j["id"] for j in plinth.c.get("/api/v1/jobs", headers=t).json()] == [job["id"]]
    other = plinth.submit(plinth.admin, {"main": role("1")}, group=group)
    assert plinth.c.get(f"/api/v1/jobs/{other['id']}", headers=t).status_code == 404


def test_group_update_changes_only_the_given_quota_resources(plinth: Plinth) -> None:
    r = plinth.c.post("/api/v1/groups", headers=plinth.admin,
                      json={"name": "qm", "quota": {"cpu": 4, "memory": "8Gi", "gpu": 1}})  # fmt: skip
    assert r.status_code == 201, r.text
    r = plinth.c.patch("/api/v1/groups/qm", headers=plinth.admin, json={"quota": {"cpu": 16}})
    assert r.status_code == 200, r.text
    assert r.json()["quota"] == {"cpu": 16.0, "memory": 8192, "gpu": 1}
