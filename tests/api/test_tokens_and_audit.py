"""Named, expiring, revocable tokens; disabled users; workload tokens that die with the
workload; the audit log (issue 8, Done when 5). Every ended token is 401 at once, the
5 s principal cache notwithstanding."""

from __future__ import annotations

from _waiting import wait_for

from .conftest import Plinth, role


def _who(plinth: Plinth, token: str) -> int:
    return plinth.c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code


def _create(plinth: Plinth, headers: dict, **body) -> dict:
    r = plinth.c.post("/api/v1/tokens", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_revoked_token_is_401_at_once_even_when_cached(plinth: Plinth) -> None:
    h, _ = plinth.member()
    t = _create(plinth, h, name="laptop")
    assert t["state"] == "active" and t["expires_at"] is None
    assert _who(plinth, t["token"]) == 200  # now in the principal cache
    r = plinth.c.delete(f"/api/v1/tokens/{t['id']}", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "revoked", r.text
    r = plinth.c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {t['token']}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    names = {x["name"]: x["state"] for x in plinth.c.get("/api/v1/tokens", headers=h).json()}
    assert names["laptop"] == "revoked"
    assert _who(plinth, h["Authorization"].split()[1]) == 200  # the user's other token lives


def test_an_expired_token_is_401(plinth: Plinth) -> None:
    h, _ = plinth.member()
    t = _create(plinth, h, name="ci", expires_in="1s")
    assert t["expires_at"] is not None
    wait_for(lambda: _who(plinth, t["token"]) == 401, 10, "the token to expire")
    assert plinth.c.get("/api/v1/tokens", headers=h).json()[-1]["state"] == "expired"


def test_members_manage_only_their_own_tokens(plinth: Plinth) -> None:
    a, _ = plinth.member()
    b, _ = plinth.member()
    t = _create(plinth, a, name="mine")
    assert plinth.c.delete(f"/api/v1/tokens/{t['id']}", headers=b).status_code == 404
    r = plinth.c.post("/api/v1/tokens", headers=b, json={"name": "x", "user": "admin"})
    assert r.status_code == 403
    assert plinth.c.get("/api/v1/tokens?all=true", headers=b).status_code == 403
    assert _who(plinth, t["token"]) == 200
    r = plinth.c.post("/api/v1/tokens", headers=a, json={"name": "x", "expires_in": "-5s"})
    assert r.status_code == 422, r.text


def test_disabling_a_user_revokes_its_tokens_and_stops_nothing_else(plinth: Plinth) -> None:
    h, _ = plinth.member()
    user = plinth.c.get("/api/v1/whoami", headers=h).json()["name"]
    job = plinth.submit(h, {"main": role("import time; time.sleep(60)")})
    plinth.wait(h, job["id"], {"running"})
    r = plinth.c.post(f"/api/v1/users/{user}/disable", headers=plinth.admin)
    assert r.status_code == 200 and r.json()["tokens_revoked"] >= 2, r.text
    r = plinth.c.get("/api/v1/whoami", headers=h)
    assert r.status_code == 401, r.text
    assert plinth.job(plinth.admin, job["id"])["state"] == "running"
    r = plinth.c.post(f"/api/v1/users/{user}/tokens", headers=plinth.admin)
    assert r.status_code == 409 and "disabled" in r.json()["detail"]
    assert plinth.c.post(f"/api/v1/users/{user}/enable", headers=plinth.admin).status_code == 200
    assert plinth.c.get("/api/v1/whoami", headers=h).status_code == 401  # old ones stay dead
    fresh = _create(plinth, plinth.admin, name="again", user=user)
    assert _who(plinth, fresh["token"]) == 200


def test_a_workloads_token_dies_with_the_workload(plinth: Plinth) -> None:
    h, _ = plinth.member()
    code = "import os, time; print(os.environ['PLINTH_TOKEN'], flush=True); time.sleep(60)"
    job = plinth.submit(h, {"main": role(code)})
    token = wait_for(lambda: plinth.log(h, job["id"], "main", 0).strip(), 20, "the token")
    scoped = {"Authorization": f"Bearer {token}"}
    assert plinth.c.get(f"/api/v1/jobs/{job['id']}", headers=scoped).status_code == 200
    plinth.c.post(f"/api/v1/jobs/{job['id']}/cancel", headers=h)
    plinth.wait(h, job["id"])
    r = plinth.c.get(f"/api/v1/jobs/{job['id']}", headers=scoped)
    assert r.status_code == 401 and "finished" in r.json()["detail"], r.text


def test_the_audit_log_shows_who_changed_what_and_when(plinth: Plinth) -> None:
    h, group = plinth.member()
    user = plinth.c.get("/api/v1/whoami", headers=h).json()["name"]
    adm = plinth.admin
    assert plinth.c.patch(f"/api/v1/groups/{group}", headers=adm,
                          json={"quota": {"cpu": 16}}).status_code == 200  # fmt: skip
    r = plinth.c.post("/api/v1/quota-expansions", headers=adm, json={
        "group": group, "add": {"gpu": 1}, "end": "2099-01-01T00:00:00Z", "reason": "demo"})
    assert r.status_code == 201, r.text
    t = _create(plinth, h, name="tmp")
    plinth.c.delete(f"/api/v1/tokens/{t['id']}", headers=h)
    plinth.c.post(f"/api/v1/users/{user}/disable", headers=adm)
    assert plinth.c.get("/api/v1/audit", headers=plinth.member()[0]).status_code == 403
    records = plinth.c.get("/api/v1/audit", headers=adm).json()
    seen = {(r["actor"], r["action"], r["target"]) for r in records}
    for want in [
        ("admin", "group.create", f"group:{group}"),
        ("admin", "user.create", f"user:{user}"),
        ("admin", "group.update", f"group:{group}"),
        ("admin", "expansion.grant", f"group:{group}"),
        (user, "token.create", f"user:{user}"),
        (user, "token.revoke", f"user:{user}"),
        ("admin", "user.disable", f"user:{user}"),
    ]:
        assert want in seen, (want, seen)
    update = next(r for r in records if r["action"] == "group.update")
    assert update["details"]["quota"]["cpu"] == 16 and update["time"]
    only = plinth.c.get("/api/v1/audit?action=token.", headers=adm).json()
    assert {r["action"] for r in only} == {"token.create", "token.revoke"}
