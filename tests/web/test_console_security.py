"""The console's security contract: session cookie flags, CSRF refusals, and members
confined to their group by URL as by link (issue 16, Done-when 2)."""

from __future__ import annotations

import sys

from tests.api.conftest import ADMIN_TOKEN
from tests.web.conftest import ORIGIN, csrf_of, login

PY = sys.executable


def _job(console, token: str, name: str = "t") -> str:
    r = console.c.post("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, json={
        "name": name, "roles": {"main": {"resources": {"cpu": 0.1, "memory": "64Mi"},
                                         "command": [PY, "-c", "print('hi')"]}}})  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_session_cookie_is_httponly_samesite_strict_and_holds_no_token(console):
    b = console.browser()
    r = b.post("/login", data={"csrf": csrf_of(b.get("/login").text), "token": ADMIN_TOKEN},
               headers={"Origin": ORIGIN}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("plinth_session="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert ADMIN_TOKEN not in cookie
    assert b.get("/", follow_redirects=False).status_code == 200


def test_without_a_session_pages_redirect_to_login_and_a_bad_token_is_refused(console):
    b = console.browser()
    r = b.get("/jobs?state=running", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Drunning"
    r = b.post("/login", data={"csrf": csrf_of(b.get("/login").text), "token": "plt_nope"},
               headers={"Origin": ORIGIN}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 401 and "invalid token" in r.text
    assert "plinth_session" not in r.headers.get("set-cookie", "")
    assert b.get("/", follow_redirects=False).status_code == 303


def test_login_refuses_another_origin_and_an_open_redirect(console):
    b = console.browser()
    csrf = csrf_of(b.get("/login").text)
    r = b.post("/login", data={"csrf": csrf, "token": ADMIN_TOKEN},
               headers={"Origin": "https://evil.example"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 403 and "cross-origin" in r.text
    r = b.post("/login", data={"csrf": "forged", "token": ADMIN_TOKEN},
               headers={"Origin": ORIGIN}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 403
    for target in ("//evil.example/x", "/\t/evil.example", "https://evil.example", "/\\evil"):
        r = b.post("/login", data={"csrf": csrf, "token": ADMIN_TOKEN, "next": target},
                   headers={"Origin": ORIGIN}, follow_redirects=False)  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == "/", target
        csrf = csrf_of(b.get("/login").text)
    # without the login form's cookie (another site's form, or cookies off): refused
    b.cookies.clear()
    r = b.post("/login", data={"csrf": csrf, "token": ADMIN_TOKEN}, headers={"Origin": ORIGIN},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 403 and "login form expired" in r.text


def test_a_form_forged_from_another_origin_is_refused_and_changes_nothing(console):
    token, _ = console.member()
    b = console.browser()
    csrf = login(b, token)
    form = {"csrf": csrf, "name": "forged", "command": f"{PY} -c pass", "cpu": "0.1",
            "memory": "64Mi"}  # fmt: skip
    for headers in (
        {"Origin": "https://evil.example"},  # another site
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Referer": "https://evil.example/page"},  # no Origin: the Referer decides
        {},  # neither: refused too
    ):
        r = b.post("/jobs", data=form, headers=headers, follow_redirects=False)
        assert r.status_code == 403, (headers, r.text)
        assert "cross-origin request refused" in r.text
    # the right origin but no (or a stale) CSRF token
    for bad in ("", "stale-token"):
        r = b.post("/jobs", data={**form, "csrf": bad}, headers={"Origin": ORIGIN},
                   follow_redirects=False)  # fmt: skip
        assert r.status_code == 403 and "CSRF" in r.text
    jobs = console.c.get("/api/v1/jobs", headers=console.admin).json()
    assert not [j for j in jobs if j["name"] == "forged"]
    # logout is a form too: a forged one leaves the session alive
    assert b.post("/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"},
                  follow_redirects=False).status_code == 403  # fmt: skip
    assert b.get("/", follow_redirects=False).status_code == 200


def test_the_same_form_from_the_console_submits_the_job_in_the_members_group(console):
    token, group = console.member()
    b = console.browser()
    csrf = login(b, token)
    r = b.post("/jobs", data={"csrf": csrf, "name": "from-form", "command": f"{PY} -c pass",
                              "cpu": "0.1", "memory": "64Mi"},
               headers={"Origin": ORIGIN}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    job_id = r.headers["location"].removeprefix("/jobs/")
    job = console.c.get(f"/api/v1/jobs/{job_id}", headers=console.admin).json()
    assert (job["name"], job["group"]) == ("from-form", group)
    assert b.get(f"/jobs/{job_id}").status_code == 200


def test_a_member_cannot_reach_the_admin_page_or_another_groups_job_by_url(console):
    mine, _ = console.member()
    theirs, _ = console.member()
    other = _job(console, theirs, "secret-job")
    own = _job(console, mine, "my-job")
    b = console.browser()
    csrf = login(b, mine)
    r = b.get("/admin")
    assert r.status_code == 403 and "admin" in r.text
    assert 'href="/admin"' not in b.get("/").text  # no link either
    for url in (f"/jobs/{other}", f"/jobs/{other}/log/main/0", f"/jobs/{other}/metrics.json"):
        r = b.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert "secret-job" not in r.text
    r = b.post(f"/jobs/{other}/cancel", data={"csrf": csrf}, headers={"Origin": ORIGIN})
    assert r.status_code == 404
    listing = b.get("/jobs").text
    assert own in listing and other not in listing
    # admin forms are refused for a member whatever the page shows
    r = b.post("/admin/groups", data={"csrf": csrf, "name": "mine-now"},
               headers={"Origin": ORIGIN})  # fmt: skip
    assert r.status_code == 403
    # the admin sees both
    a = console.browser()
    login(a, ADMIN_TOKEN)
    assert a.get(f"/jobs/{other}").status_code == 200
    assert a.get("/admin").status_code == 200


def test_logout_ends_the_session_and_a_revoked_token_ends_it_too(console):
    token, _ = console.member()
    b = console.browser()
    csrf = login(b, token)
    r = b.post("/logout", data={"csrf": csrf}, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert b.get("/", follow_redirects=False).status_code == 303
    # a session whose user is disabled (or token revoked) ends on its next request
    login(b, token)
    name = console.c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    db = console.c.app.state.plinth.db
    from plinth.store.models import User

    with db.session() as s:
        s.query(User).filter(User.name == name["name"]).update({"disabled": True})
    assert b.get("/", follow_redirects=False).status_code == 303


def test_bad_form_input_gets_a_clear_4xx(console):
    token, _ = console.member()
    b = console.browser()
    csrf = login(b, token)
    h = {"Origin": ORIGIN}
    cases = [
        ({"name": "x", "command": f"{PY} -c pass", "memory": "lots"}, 422, "memory"),
        ({"name": "x", "command": ""}, 422, "command"),
        ({"name": "x", "command": "'unclosed"}, 422, "quotation"),
        ({"spec": "roles: [1, 2"}, 422, "YAML"),
        ({"spec": "- a list"}, 422, "mapping"),
        ({"spec": "name: x\nroles: {}"}, 422, "roles"),
        ({"name": "Bad Name!", "command": "true"}, 422, "name"),
    ]
    for form, status, words in cases:
        r = b.post("/jobs", data={"csrf": csrf, **form}, headers=h, follow_redirects=False)
        assert r.status_code == status, (form, r.status_code, r.text[-300:])
        assert words.lower() in r.text.lower(), (form, r.text[-300:])
    r = b.post("/jobs", content=b'{"csrf": "x"}', headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 415
    r = b.post("/jobs", content=b"csrf=%ff%fe", headers={
        **h, "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code in (400, 403)
    assert b.get("/jobs?state=nonsense").status_code == 422
    assert b.get("/jobs/" + "x" * 100).status_code == 422
    assert b.get("/jobs/job-doesnotexist").status_code == 404
    assert b.get("/models/nope").status_code == 404
    r = b.post("/notebooks/nb-nope/extend", data={"csrf": csrf, "by": "soon"}, headers=h)
    assert r.status_code in (404, 422)
    r = b.post("/notebooks", data={"csrf": csrf, "cpu": "-1"}, headers=h)
    assert r.status_code == 422


def test_pages_are_not_in_the_openapi_schema_and_forbid_framing(console):
    paths = console.c.get("/openapi.json").json()["paths"]
    assert all(p.startswith("/api/") or p in ("/healthz", "/metrics") for p in paths), paths
    b = console.browser()
    login(b, ADMIN_TOKEN)
    r = b.get("/")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'self'
    assert "<script>" not in r.text  # no inline script: everything is a vendored file
    assert b.get("/static/vendor/htmx.min.js").status_code == 200
    assert b.get("/static/vendor/uPlot.iife.min.js").status_code == 200


def test_a_member_cannot_see_or_move_another_groups_model(console):
    from plinth.store.models import Group, Model, ModelAlias, ModelVersion

    owner, owner_group = console.member()
    other, _ = console.member()
    with console.c.app.state.plinth.db.session() as s:
        gid = s.query(Group.id).filter(Group.name == owner_group).scalar()
        m = Model(name="ctr", group_id=gid, created_by="x")
        s.add(m)
        s.flush()
        s.add_all([ModelVersion(model_id=m.id, version=v, path=f"m/{v}", lineage={},
                                created_by="x") for v in (1, 2)])  # fmt: skip
        s.add(ModelAlias(model_id=m.id, alias="production", version=1))
    b = console.browser()
    csrf = login(b, other)
    assert "ctr" not in b.get("/models").text
    assert b.get("/models/ctr").status_code == 404
    r = b.post("/models/ctr/aliases", data={"csrf": csrf, "alias": "production", "version": "2"},
               headers={"Origin": ORIGIN})  # fmt: skip
    assert r.status_code == 404
    o = console.browser()
    csrf = login(o, owner)
    r = o.post("/models/ctr/aliases", data={"csrf": csrf, "alias": "production", "version": "9"},
               headers={"Origin": ORIGIN})  # fmt: skip
    assert 400 <= r.status_code < 500 and "9" in r.text
    r = o.post("/models/ctr/aliases", data={"csrf": csrf, "alias": "production", "version": "x"},
               headers={"Origin": ORIGIN})  # fmt: skip
    assert r.status_code == 422
    r = o.post("/models/ctr/aliases", data={"csrf": csrf, "alias": "production", "version": "2"},
               headers={"Origin": ORIGIN}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    model = console.c.get("/api/v1/models/ctr", headers=console.admin).json()
    assert model["aliases"] == {"production": 2}
