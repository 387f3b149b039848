"""The console's pages and admin forms over the services (TestClient): what each page
shows comes from the API's handlers, and each form changes what the API then reports."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from tests.api.conftest import ADMIN_TOKEN
from tests.web.conftest import ORIGIN, login

PY = sys.executable
H = {"Origin": ORIGIN}


def _local(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M")  # what <input type=datetime-local> sends


def test_admin_forms_create_groups_users_expansions_and_reservations(console):
    b = console.browser()
    csrf = login(b, ADMIN_TOKEN)
    api = console.c
    r = b.post("/admin/groups", data={"csrf": csrf, "name": "vision", "quota": "cpu=2,memory=4Gi",
                                      "borrow_limit": "cpu=1", "lend_limit": ""},
               headers=H, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    g = api.get("/api/v1/groups/vision", headers=console.admin).json()
    assert (g["quota"]["cpu"], g["quota"]["memory"], g["borrow_limit"]["cpu"]) == (2, 4096, 1)

    r = b.post("/admin/users", data={"csrf": csrf, "name": "vic", "group": "vision", "cap": ""},
               headers=H)  # fmt: skip
    assert r.status_code == 200 and 'data-testid="new-token"' in r.text
    token = r.text.split('data-testid="new-token">')[1].split("<")[0]
    who = api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert (who["name"], who["group"]) == ("vic", "vision")

    end = datetime.now(UTC) + timedelta(hours=2)
    r = b.post("/admin/expansions", data={"csrf": csrf, "owner": "group:vision", "add": "cpu=2",
                                          "start": "", "end": _local(end), "reason": "launch"},
               headers=H, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    [exp] = api.get("/api/v1/quota-expansions", headers=console.admin).json()
    assert (exp["group"], exp["add"]["cpu"], exp["status"]) == ("vision", 2, "active")
    overview = b.get("/").text
    assert "expansions +2" in overview  # the bar's numbers

    r = b.post("/admin/reservations", data={"csrf": csrf, "owner": "user:vic",
                                            "resources": "cpu=1,memory=1Gi", "node": "n1",
                                            "end": _local(end), "reason": "demo"},
               headers=H, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    [res] = api.get("/api/v1/reservations", headers=console.admin).json()
    assert (res["user"], res["node"], res["resources"]["memory"]) == ("vic", "n1", 1024)
    assert res["id"] in b.get("/admin").text

    r = b.post(f"/admin/expansions/{exp['id']}/revoke", data={"csrf": csrf, "reason": "done"},
               headers=H, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    [exp] = api.get("/api/v1/quota-expansions", headers=console.admin).json()
    assert (exp["status"], exp["revoke_reason"]) == ("revoked", "done")
    r = b.post(f"/admin/reservations/{res['id']}/delete", data={"csrf": csrf}, headers=H,
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    assert api.get("/api/v1/reservations", headers=console.admin).json() == []

    # refusals come back as 4xx pages with the service's message
    r = b.post("/admin/groups", data={"csrf": csrf, "name": "vision"}, headers=H)
    assert r.status_code == 409
    r = b.post("/admin/groups", data={"csrf": csrf, "name": "x", "quota": "cpu=lots"}, headers=H)
    assert r.status_code == 422 and "cpu" in r.text
    r = b.post("/admin/expansions", data={"csrf": csrf, "owner": "nobody", "add": "cpu=1",
                                          "end": _local(end), "reason": "x"}, headers=H)  # fmt: skip
    assert r.status_code == 422 and "owner" in r.text
    r = b.post("/admin/reservations", data={"csrf": csrf, "owner": "group:vision",
                                            "resources": "cpu=1", "end": "tomorrow"}, headers=H)  # fmt: skip
    assert r.status_code == 422 and "end" in r.text


def test_job_page_its_log_and_metrics_and_the_live_fragments(console):
    token, _ = console.member()
    auth = {"Authorization": f"Bearer {token}"}
    job = console.c.post("/api/v1/jobs", headers=auth, json={
        "name": "hello", "roles": {"main": {"resources": {"cpu": 0.1, "memory": "64Mi"},
                                            "command": [PY, "-c", "print('hello console')"]}}},
    ).json()  # fmt: skip
    jid = job["id"]
    r = console.c.post(f"/api/v1/jobs/{jid}/metrics", headers=auth, json={"points": [
        {"role": "main", "step": s, "values": {"loss": 1 / (s + 1)}} for s in range(5)]})
    assert r.status_code == 200, r.text
    from _waiting import wait_for

    wait_for(lambda: console.c.get(f"/api/v1/jobs/{jid}", headers=auth).json()["state"]
             == "succeeded", 30, "the job to succeed")  # fmt: skip
    b = console.browser()
    login(b, token)
    page = b.get(f"/jobs/{jid}").text
    assert "hello" in page and 'data-log-url="/jobs/' in page and "data-metrics-url" in page
    log = b.get(f"/jobs/{jid}/log/main/0")
    assert log.text == "hello console\n"
    assert log.headers["x-log-complete"] == "true"
    assert int(log.headers["x-log-offset"]) == len(log.content)
    again = b.get(f"/jobs/{jid}/log/main/0?offset={log.headers['x-log-offset']}")
    assert again.text == "" and again.headers["x-log-complete"] == "true"
    m = b.get(f"/jobs/{jid}/metrics.json").json()
    assert [p["values"]["loss"] for p in m["points"]] == [1 / (s + 1) for s in range(5)]
    assert b.get(f"/jobs/{jid}/metrics.json?after={m['last']}").json()["points"] == []
    # htmx polls get the live part only; a finished job's part stops polling
    frag = b.get(f"/jobs/{jid}", headers={"HX-Request": "true"}).text
    assert frag.lstrip().startswith('<div id="live"') and "<html" not in frag
    assert "hx-trigger" not in frag.split(">")[0]
    logs = b.get(f"/jobs/{jid}?part=logs", headers={"HX-Request": "true"}).text
    assert logs.lstrip().startswith('<section id="logs"') and "hx-trigger" not in logs
    assert f'data-log-url="/jobs/{jid}/log/main/0"' in logs
    assert b.get(f"/jobs/{jid}?part=nonsense").status_code == 422
    assert "<html" not in b.get("/jobs", headers={"HX-Request": "true"}).text
    assert "<html" not in b.get("/queue", headers={"HX-Request": "true"}).text
    # filters and search
    assert jid in b.get("/jobs?state=succeeded&q=hell").text
    assert jid not in b.get("/jobs?state=failed").text
    assert jid not in b.get("/jobs?q=nomatch").text
    # a session that ended: polls get 401, pages redirect
    b.cookies.clear()
    assert b.get(f"/jobs/{jid}", headers={"HX-Request": "true"}).status_code == 401


def test_overview_usage_chart_holds_the_members_group_only(console):
    import html
    import json
    import re

    token, group = console.member()
    console.member()  # another group
    b = console.browser()
    login(b, token)
    page = b.get("/?hours=6")
    assert page.status_code == 200
    data = json.loads(html.unescape(re.search(r'data-usage="([^"]*)"', page.text).group(1)))
    assert list(data["groups"]) == [group] and data["span_s"] == 6 * 3600
    assert b.get("/?hours=0").status_code == 422
    assert b.get("/?hours=lots").status_code == 422
