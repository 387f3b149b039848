"""The console's deployments page (TestClient): it lists and shows what the API's own
handlers return, its forms (scale, canary share, delete) go through those handlers, a
member never sees or reaches another group's deployment, and a forged form changes
nothing.

No model is trained here: the model's version rows are inserted as the registry would
and the deployment is created through the API (``POST /api/v1/deployments``). Its
replicas run ``python -m plinth.serve`` on a package that is not one, so they exit and
are restarted; the deployment itself is admitted and runs, which is all the page needs.
"""

from __future__ import annotations

from _waiting import wait_for

from tests.api.conftest import ADMIN_TOKEN
from tests.web.conftest import ORIGIN, login

H = {"Origin": ORIGIN}


def _model(console, group: str, name: str = "ctr") -> None:
    from plinth.store.models import Group, Model, ModelAlias, ModelVersion

    for v in (1, 2):
        pkg = console.home / "models-fake" / name / str(v)
        pkg.mkdir(parents=True)
        (pkg / "README").write_text("not a model package\n")
    with console.c.app.state.plinth.db.session() as s:
        gid = s.query(Group.id).filter(Group.name == group).scalar()
        m = Model(name=name, group_id=gid, created_by="x")
        s.add(m)
        s.flush()
        s.add_all([ModelVersion(model_id=m.id, version=v, path=f"models-fake/{name}/{v}",
                                lineage={}, created_by="x") for v in (1, 2)])  # fmt: skip
        s.add_all([ModelAlias(model_id=m.id, alias="production", version=1),
                   ModelAlias(model_id=m.id, alias="canary", version=2)])  # fmt: skip


def _deploy(console, token: str, group: str, name: str = "ctr-live", **extra) -> dict:
    _model(console, group)
    r = console.c.post("/api/v1/deployments", headers={"Authorization": f"Bearer {token}"},
                       json={"name": name, "model": "ctr@production", "replicas": 1,
                             "resources": {"cpu": 0.1, "memory": "64Mi"}, **extra})  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()


def _api(console, name: str) -> dict:
    r = console.c.get(f"/api/v1/deployments/{name}", headers=console.admin)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_page_lists_and_shows_a_deployment_and_its_forms_act(console):
    token, group = console.member()
    d = _deploy(console, token, group, canary="ctr@canary", canary_percent=10)
    b = console.browser()
    csrf = login(b, token)
    assert 'href="/deployments"' in b.get("/").text  # in the navigation
    listing = b.get("/deployments")
    assert listing.status_code == 200
    row = listing.text.split('data-testid="deploy-ctr-live"')[1].split("</tr>")[0]
    assert "ctr@production" in row and "/ 1" in row and "10.0% → v2" in row
    page = b.get("/deployments/ctr-live")
    assert page.status_code == 200
    assert d["id"] in page.text and 'data-testid="deploy-version">1<' in page.text
    assert "POST /api/v1/deployments/ctr-live/predict" in page.text

    wait_for(lambda: _api(console, "ctr-live")["state"] == "running", 30, "it to run")
    r = b.post("/deployments/ctr-live/traffic", data={"csrf": csrf, "canary_percent": "25"},
               headers=H, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/deployments/ctr-live"
    assert _api(console, "ctr-live")["canary"]["percent"] == 25
    r = b.post("/deployments/ctr-live/scale", data={"csrf": csrf, "replicas": "2"}, headers=H,
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    assert _api(console, "ctr-live")["replicas"] == 2
    page = b.get("/deployments/ctr-live").text
    assert "scaled from 1 to 2 replica(s)" in page and "canary share 10% -&gt; 25%" in page
    assert 'data-testid="last-delta">none<' in page
    # the last delta applied, from the follower's events (recorded here as it would)
    from plinth.services import events as ev
    from plinth.store.models import utcnow

    with console.c.app.state.plinth.db.session() as s:
        ev.record(s, d["id"], "deltas_applied", "replica x applied delta(s) 1..3 of version 1",
                  utcnow(), replica="x", version=1, seq=3)  # fmt: skip
    page = b.get("/deployments/ctr-live").text
    assert 'data-testid="last-delta">3 of version 1' in page
    # bad input: the service's refusal, nothing changed
    r = b.post("/deployments/ctr-live/scale", data={"csrf": csrf, "replicas": "0"}, headers=H)
    assert r.status_code == 422 and "replicas" in r.text
    r = b.post("/deployments/ctr-live/traffic", data={"csrf": csrf, "canary_percent": "lots"},
               headers=H)  # fmt: skip
    assert r.status_code == 422
    assert b.post("/deployments/ctr-live/restart", data={"csrf": csrf},
                  headers=H).status_code == 422  # fmt: skip
    r = b.post("/deployments/ctr-live/delete", data={"csrf": csrf}, headers=H,
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    assert _api(console, "ctr-live")["state"] == "cancelled"
    assert "ctr-live" not in b.get("/deployments").text  # live ones only
    assert "ctr-live" in b.get("/deployments?all=true").text


def test_a_member_cannot_see_or_reach_another_groups_deployment(console):
    owner, group = console.member()
    other, _ = console.member()
    _deploy(console, owner, group, name="secret-deploy")
    b = console.browser()
    csrf = login(b, other)
    assert "secret-deploy" not in b.get("/deployments").text
    r = b.get("/deployments/secret-deploy")
    assert r.status_code == 404 and "ctr@" not in r.text
    for action, form in (("scale", {"replicas": "3"}), ("traffic", {"canary_percent": "5"}),
                         ("delete", {})):  # fmt: skip
        r = b.post(f"/deployments/secret-deploy/{action}", data={"csrf": csrf, **form},
                   headers=H)  # fmt: skip
        assert r.status_code == 404, (action, r.status_code)
    d = _api(console, "secret-deploy")
    assert d["state"] not in ("cancelled",) and d["replicas"] == 1
    a = console.browser()
    login(a, ADMIN_TOKEN)  # the admin sees every group's
    assert "secret-deploy" in a.get("/deployments").text
    assert a.get("/deployments/secret-deploy").status_code == 200


def test_a_forged_scale_or_delete_form_is_refused_and_changes_nothing(console):
    token, group = console.member()
    _deploy(console, token, group)
    b = console.browser()
    csrf = login(b, token)
    for action, form in (("scale", {"replicas": "3"}), ("delete", {})):
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Referer": "https://evil.example/page"}, {}):  # fmt: skip
            r = b.post(f"/deployments/ctr-live/{action}", data={"csrf": csrf, **form},
                       headers=headers, follow_redirects=False)  # fmt: skip
            assert r.status_code == 403 and "cross-origin" in r.text, (action, headers)
        for bad in ("", "stale-token"):
            r = b.post(f"/deployments/ctr-live/{action}", data={**form, "csrf": bad},
                       headers=H, follow_redirects=False)  # fmt: skip
            assert r.status_code == 403 and "CSRF" in r.text, (action, bad)
    d = _api(console, "ctr-live")
    assert d["state"] != "cancelled" and d["replicas"] == 1
    events = console.c.get("/api/v1/deployments/ctr-live/events", headers=console.admin).json()
    assert not [e for e in events if e["type"] in ("scaled", "cancelled")]
