"""Notebook sessions over the API, with real JupyterLab processes: the session's own
token, idle timeout (a busy kernel is never idle), maximum lifetime, warnings first,
quota returned, refusals naming the limit, a JupyterLab that fails to start.

Timeouts are seconds (per session); every wait is on a condition, never a sleep."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

from _waiting import wait_for

from tests.notebooks._kernel import run_cell, send_cell, start_kernel
from tests.notebooks.conftest import Notebooks, jupyter


def _used(nbs: Notebooks, group: str) -> dict[str, Any]:
    r = nbs.p.c.get(f"/api/v1/groups/{group}", headers=nbs.p.admin)
    assert r.status_code == 200, r.text
    return r.json()["status"]["used"]


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_a_session_answers_its_own_token_only(nbs: Notebooks) -> None:
    h, group = nbs.p.member()
    a = nbs.wait_ready(h, nbs.start(h)["id"])
    b = nbs.wait_ready(h, nbs.start(h)["id"])
    assert a["token"] != b["token"]
    assert a["url"].startswith("http://127.0.0.1:")
    assert jupyter(a, "/api/status", a["token"]).status_code == 200
    assert jupyter(a, "/api/status").status_code == 403
    assert jupyter(a, "/api/status", b["token"]).status_code == 403
    assert jupyter(b, "/api/status", a["token"]).status_code == 403
    # Another member of the group sees the session, but not its token.
    other, _ = nbs.p.member(group)
    seen = nbs.get(other, a["id"])
    assert seen["token"] is None and seen["workspace"] is None
    # Another group does not see it at all.
    stranger, _ = nbs.p.member()
    assert nbs.p.c.get(f"/api/v1/notebooks/{a['id']}", headers=stranger).status_code == 404
    listed = nbs.p.c.get("/api/v1/notebooks", headers=h).json()
    assert {a["id"], b["id"]} <= {n["id"] for n in listed}


def test_the_workspace_is_private_and_persists(nbs: Notebooks) -> None:
    h, _ = nbs.p.member()
    nb = nbs.wait_ready(h, nbs.start(h)["id"])
    ws = nb["workspace"]
    assert stat.S_IMODE(os.stat(ws).st_mode) == 0o700
    k = start_kernel(nb)
    out = run_cell(nb, k, "open('kept.txt', 'w').write('hello'); import os; print(os.getcwd())")
    assert out["status"] == "ok", out
    assert out["stdout"].strip() == ws
    r = nbs.p.c.post(f"/api/v1/notebooks/{nb['id']}/stop", headers=h)
    assert r.status_code == 200, r.text
    nbs.wait_state(h, nb["id"], {"cancelled"})
    again = nbs.wait_ready(h, nbs.start(h)["id"])
    assert again["workspace"] == ws
    k = start_kernel(again)
    out = run_cell(again, k, "print(open('kept.txt').read())")
    assert out["stdout"].strip() == "hello", out


def test_an_idle_session_stops_after_a_warning_and_returns_its_quota(nbs: Notebooks) -> None:
    h, group = nbs.p.member()
    before = _used(nbs, group)
    nb = nbs.wait_ready(h, nbs.start(h, idle_timeout="3s")["id"])
    assert _used(nbs, group)["cpu"] > before["cpu"]
    done = nbs.wait_state(h, nb["id"], {"timed_out"})
    assert done["reason"].startswith("idle_timeout:"), done["reason"]
    assert "idle timeout of 3s reached" in done["reason"]
    types = _types(nbs.events(h, nb["id"]))
    assert types.index("ready") < types.index("idle_warning") < types.index("timed_out")
    wait_for(lambda: _used(nbs, group) == before, 30, "the group's usage to return")
    notice = Path(nb["workspace"]) / "PLINTH-NOTICE.txt"
    assert "idle" in notice.read_text()


def test_a_busy_kernel_is_never_idle(nbs: Notebooks, tmp_path) -> None:
    h, _ = nbs.p.member()
    nb = nbs.wait_ready(h, nbs.start(h, idle_timeout="3s")["id"])
    k = start_kernel(nb)
    flag = tmp_path / "go"
    send_cell(nb, k, f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.05)")
    busy = wait_for(
        lambda: ((a := nbs.get(h, nb["id"])["activity"]) and a["busy_kernels"] == 1 and a),
        60, "the monitor to see the kernel busy",
    )  # fmt: skip
    since = datetime.fromisoformat(busy["checked_at"])

    def long_past_the_timeout() -> Any:
        cur = nbs.get(h, nb["id"])
        assert cur["state"] == "running", cur["reason"]
        a = cur["activity"]
        return (a and a["busy_kernels"] == 1
                and (datetime.fromisoformat(a["checked_at"]) - since).total_seconds() > 9)

    wait_for(long_past_the_timeout, 60, "checks of the busy session past 3 idle timeouts")
    assert "idle_warning" not in _types(nbs.events(h, nb["id"]))
    flag.write_text("")  # the cell ends: the session becomes idle and stops
    done = nbs.wait_state(h, nb["id"], {"timed_out"})
    assert done["reason"].startswith("idle_timeout:")


def test_the_maximum_lifetime_stops_an_active_session(nbs: Notebooks, tmp_path) -> None:
    h, group = nbs.p.member()
    before = _used(nbs, group)
    nb = nbs.wait_ready(h, nbs.start(h, idle_timeout="1h", max_lifetime="30s")["id"])
    k = start_kernel(nb)
    send_cell(nb, k, "import time\nwhile True: time.sleep(0.05)")  # always busy
    done = nbs.wait_state(h, nb["id"], {"timed_out"}, timeout=90)
    assert done["reason"].startswith("max_lifetime:"), done["reason"]
    assert "maximum lifetime of 30s reached" in done["reason"]
    types = _types(nbs.events(h, nb["id"]))
    assert types.index("lifetime_warning") < types.index("timed_out")
    assert "idle_warning" not in types
    wait_for(lambda: _used(nbs, group) == before, 30, "the group's usage to return")


def test_extend_pushes_the_lifetime_within_the_cap(nbs: Notebooks) -> None:
    h, _ = nbs.p.member()
    nb = nbs.start(h, max_lifetime="1h")
    nid = nb["id"]
    r = nbs.p.c.post(f"/api/v1/notebooks/{nid}/extend", json={"by": "2h"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["max_lifetime"] == 3 * 3600
    r = nbs.p.c.post(f"/api/v1/notebooks/{nid}/extend", json={"by": "30d"}, headers=h)
    assert r.status_code == 422
    assert "over the cap of 7d00h" in r.json()["detail"]
    assert "extended" in _types(nbs.events(h, nid))
    r = nbs.p.c.post(f"/api/v1/notebooks/{nid}/extend", json={"by": "-1h"}, headers=h)
    assert r.status_code == 422
    nbs.p.c.post(f"/api/v1/notebooks/{nid}/stop", headers=h)
    nbs.wait_state(h, nid, {"cancelled"})
    r = nbs.p.c.post(f"/api/v1/notebooks/{nid}/extend", json={"by": "1h"}, headers=h)
    assert r.status_code == 409


def _refused(nbs: Notebooks, h: dict[str, str], body: dict[str, Any]) -> str:
    r = nbs.p.c.post("/api/v1/notebooks", json=body, headers=h)
    assert 400 <= r.status_code < 500, r.text
    return str(r.json()["detail"])


def test_over_quota_or_caps_is_refused_with_the_limit_named(nbs: Notebooks) -> None:
    c, admin = nbs.p.c, nbs.p.admin
    r = c.post("/api/v1/groups", json={
        "name": "small", "quota": {"cpu": 2, "memory": "4Gi"}, "borrow_limit": {"cpu": 0},
        "max_job": {"gpu": 0}, "max_runtime": "2h"}, headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    r = c.post("/api/v1/users", json={"name": "ann", "group": "small", "cap": {"cpu": 3}},
               headers=admin)  # fmt: skip
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    assert "quota plus its borrow limit: cpu 2.5 > 2" in _refused(
        nbs, h, {"resources": {"cpu": 2.5, "memory": "1Gi"}})
    assert ("resources: the notebook's total demand is over user 'ann''s personal cap"
            " (cpu 3.5 > 3)") in _refused(nbs, h, {"resources": {"cpu": 3.5}})
    assert "resources: the notebook's total demand is over group 'small''s largest-job cap" \
        in _refused(nbs, h, {"resources": {"cpu": 1, "gpu": 1}})
    assert "cap of 2h00m" in _refused(nbs, h, {"max_lifetime": "3h"})
    assert "max_idle_timeout" in _refused(nbs, h, {"idle_timeout": "2d"})
    assert "both" in _refused(nbs, h, {"at": "2030-01-01T10:00:00Z"})
    assert "in the past" in _refused(nbs, h, {"at": "2001-01-01T10:00:00Z", "duration": "1h"})
    assert _refused(nbs, h, {"resources": {"cpu": -1}})
    assert _refused(nbs, h, {"idle_timeout": "soon"})
    assert _refused(nbs, h, {"name": "bad name!"})
    assert c.get("/api/v1/notebooks", headers=h).json() == []


def test_a_jupyterlab_that_fails_to_start_ends_failed_with_its_log(
    tmp_path, monkeypatch
) -> None:
    from tests.api.conftest import running_plinth
    from tests.notebooks.conftest import NOTEBOOKS_CONFIG

    cfg = {**NOTEBOOKS_CONFIG, "jupyter_args": ["--ServerApp.root_dir=/nonexistent/plinth"]}
    with running_plinth(tmp_path, monkeypatch, notebooks=cfg) as p:
        nbs = Notebooks(p)
        h, group = p.member()
        before = _used(nbs, group)
        nb = nbs.start(h)
        done = nbs.wait_state(h, nb["id"], {"failed"})
        assert done["log_tail"] and "/nonexistent/plinth" in done["log_tail"]
        assert done["url"] is None and not done["ready"]
        log = p.c.get(f"/api/v1/notebooks/{nb['id']}/logs", headers=h)
        assert log.status_code == 200 and "/nonexistent/plinth" in log.text
        wait_for(lambda: _used(nbs, group) == before, 30, "the group's usage to return")


def test_a_jupyterlab_that_never_answers_fails_after_the_start_timeout(
    tmp_path, monkeypatch
) -> None:
    from tests.api.conftest import running_plinth

    # JupyterLab runs, but answers under another path than the platform asks at.
    cfg = {"check_interval": 0.2, "start_timeout": "3s",
           "jupyter_args": ["--ServerApp.base_url=/elsewhere/"]}  # fmt: skip
    with running_plinth(tmp_path, monkeypatch, notebooks=cfg) as p:
        nbs = Notebooks(p)
        h, group = p.member()
        before = _used(nbs, group)
        nb = nbs.start(h)
        done = nbs.wait_state(h, nb["id"], {"failed"}, timeout=90)
        assert "did not answer within 3s" in done["reason"], done["reason"]
        assert "its log ends with" in done["reason"]
        wait_for(lambda: _used(nbs, group) == before, 30, "the group's usage to return")
        nbs.stop_all()
