"""The quota scheduler through the API (real app, SQLite, local executor, real
processes): expansions take effect and expire by themselves, reservations are kept
free, expansions are revoked, the queue's order and visibility, explain, group status,
admin and personal caps (a resource left out of a cap is not capped). The personal cap
also runs on the Ray executor (issue 15): the same app on the session's real Ray
cluster on loopback.

Every group here may not borrow, and the default group's quota is set to zero, so
quota alone decides who starts; times are awaited by condition, never slept, and
assertions are about the order of events, never about how fast the machine is.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .conftest import Plinth, role, running_plinth, wait_for

NO_BORROW = {"cpu": 0, "memory": 0, "gpu": 0}
HOLD = "import time; time.sleep(60)"


def iso(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def team(p: Plinth, cpu: float, **extra: Any) -> tuple[dict[str, str], str, str]:
    """A group with `cpu` cores (and 4Gi) that may not borrow, and one member:
    (member headers, group, user)."""
    group = f"g-{secrets.token_hex(3)}"
    body = {"name": group, "quota": {"cpu": cpu, "memory": "4Gi"}, "borrow_limit": NO_BORROW,
            **extra}  # fmt: skip
    r = p.c.post("/api/v1/groups", json=body, headers=p.admin)
    assert r.status_code == 201, r.text
    user = f"u-{secrets.token_hex(3)}"
    r = p.c.post("/api/v1/users", json={"name": user, "group": group}, headers=p.admin)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}, group, user


def _no_default_quota(p: Plinth) -> Plinth:
    r = p.c.patch("/api/v1/groups/default", json={"quota": {"cpu": 0, "memory": 0}},
                  headers=p.admin)  # fmt: skip
    assert r.status_code == 200, r.text
    return p


@pytest.fixture
def q(plinth: Plinth) -> Plinth:
    return _no_default_quota(plinth)


@pytest.fixture(params=["local", "ray"])
def q_any(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Plinth]:
    """``q`` on each executor; ``ray``: the session's Ray cluster (``nodes`` from it)."""
    if request.param == "local":
        yield request.getfixturevalue("q")
        return
    executor = request.getfixturevalue("ray_cluster").server_executor(tmp_path / "agents")
    with running_plinth(tmp_path, monkeypatch, nodes=None, executor=executor) as p:
        nodes = p.c.get("/api/v1/nodes", headers=p.admin).json()
        assert {"head", "w1"} <= {n["name"] for n in nodes}, nodes  # the Ray cluster's
        yield _no_default_quota(p)


def events_of(p: Plinth, h: dict[str, str], jid: str) -> list[str]:
    return [e["type"] for e in p.events(h, jid)]


def waiting_reason(p: Plinth, h: dict[str, str], jid: str) -> str:
    j = wait_for(lambda: (x := p.job(h, jid))["reason"].startswith("waiting") and x, 10,
                 f"{jid} to wait with a reason")  # fmt: skip
    assert j["state"] == "pending"
    return j["reason"]


def test_expansion_takes_effect_and_expires_by_itself(q: Plinth) -> None:
    h, group, _ = team(q, 1)
    job = q.submit(h, {"main": role("print('big')", cpu=2)})
    reason = waiting_reason(q, h, job["id"])
    assert f"group {group}" in reason and "cpu" in reason

    # Scheduled to start a few seconds from now: nothing wakes the loop at that moment
    # but the expansion's own start, so the admission proves it took effect by itself.
    start, end = datetime.now(UTC) + timedelta(seconds=3), iso(60)
    r = q.c.post("/api/v1/quota-expansions", headers=q.admin, json={
        "group": group, "add": {"cpu": 1}, "start": start.isoformat(), "end": end,
        "reason": "deadline week"})  # fmt: skip
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["granted_by"] == "admin"
    done = q.wait(h, job["id"], timeout=30)
    assert done["state"] == "succeeded"
    # Ordering, not speed: it was admitted only once the window had opened.
    admitted = next(e for e in q.events(h, job["id"]) if e["type"] == "admitted")
    assert datetime.fromisoformat(admitted["time"]) >= start - timedelta(seconds=0.05)

    # A short one expires by itself: whatever it was when we looked, it ends expired.
    r = q.c.post("/api/v1/quota-expansions", headers=q.admin, json={
        "group": group, "add": {"cpu": 3}, "end": iso(2), "reason": "short"})  # fmt: skip
    short = r.json()
    assert short["status"] in ("active", "expired")
    wait_for(
        lambda: all(e["id"] != short["id"] for e in
                    q.c.get("/api/v1/quota-expansions?active=true", headers=h).json()),
        10, "the short expansion to expire",
    )  # fmt: skip
    history = {e["id"]: e for e in q.c.get("/api/v1/quota-expansions", headers=h).json()}
    assert history[short["id"]]["status"] == "expired" and short["reason"] == "short"
    # After expiry the group has 2 cpu again: a 3-cpu job waits.
    big = q.submit(h, {"main": role("print(1)", cpu=3)})
    assert "cpu" in waiting_reason(q, h, big["id"])


def test_revoked_expansion_admits_nothing_more_and_its_work_keeps_running(q: Plinth) -> None:
    h, group, _ = team(q, 1)
    r = q.c.post("/api/v1/quota-expansions", headers=q.admin, json={
        "group": group, "add": {"cpu": 2}, "end": iso(3600), "reason": "launch"})  # fmt: skip
    grant = r.json()
    g = q.c.get(f"/api/v1/groups/{group}", headers=h).json()
    assert g["status"]["nominal"]["cpu"] == 3 and g["status"]["expansion"]["cpu"] == 2
    under = q.submit(h, {"main": role(HOLD, cpu=2)})  # fits only with the expansion
    q.wait(h, under["id"], {"running"})

    # Members may not revoke; an unknown id is a 404; a reason is required.
    assert q.c.delete(f"/api/v1/quota-expansions/{grant['id']}?reason=x",
                      headers=h).status_code == 403  # fmt: skip
    assert q.c.delete("/api/v1/quota-expansions/999999?reason=x",
                      headers=q.admin).status_code == 404  # fmt: skip
    assert q.c.delete(f"/api/v1/quota-expansions/{grant['id']}",
                      headers=q.admin).status_code == 422  # fmt: skip
    r = q.c.delete(f"/api/v1/quota-expansions/{grant['id']}?reason=launch%20moved",
                   headers=q.admin)  # fmt: skip
    assert r.status_code == 200, r.text
    revoked = r.json()
    assert revoked["status"] == "revoked" and revoked["revoked_by"] == "admin"
    assert revoked["granted_by"] == "admin" and revoked["revoke_reason"] == "launch moved"
    assert q.c.delete(f"/api/v1/quota-expansions/{grant['id']}?reason=again",
                      headers=q.admin).status_code == 409  # fmt: skip

    # At once: the group's nominal is 1 cpu again, so a 1-cpu job waits (it would have
    # fit the expansion), while the work admitted under it keeps running, as borrowing.
    g = q.c.get(f"/api/v1/groups/{group}", headers=h).json()
    assert g["status"]["nominal"]["cpu"] == 1 and g["status"]["expansion"]["cpu"] == 0
    assert g["status"]["borrowed"]["cpu"] == 1
    after = q.submit(h, {"main": role("print(1)", cpu=1)})
    assert f"group {group}" in waiting_reason(q, h, after["id"])
    assert q.job(h, under["id"])["state"] == "running"
    history = {e["id"]: e for e in q.c.get("/api/v1/quota-expansions", headers=h).json()}
    assert history[grant["id"]]["status"] == "revoked"


def test_expansion_validation(q: Plinth) -> None:
    h, group, user = team(q, 1)
    base = {"group": group, "add": {"gpu": 1}, "end": iso(60), "reason": "x"}
    cases = [
        ({**base, "end": iso(-60)}, q.admin, 422, "in the past"),
        ({**base, "user": user}, q.admin, 422, "exactly one of group or user"),
        ({**base, "group": "no-such-group"}, q.admin, 404, "not found"),
        ({**base, "add": {}}, q.admin, 422, "at least one resource"),
        ({**base, "start": iso(120)}, q.admin, 422, "end must be after start"),
        ({k: v for k, v in base.items() if k != "reason"}, q.admin, 422, "reason"),
        (base, h, 403, "admin"),
    ]
    for body, who, status, text in cases:
        r = q.c.post("/api/v1/quota-expansions", json=body, headers=who)
        assert r.status_code == status, (body, r.text)
        assert text in str(r.json()["detail"]), r.text
    r = q.c.post("/api/v1/quota-expansions", json={**base, "group": None, "user": user},
                 headers=q.admin)  # fmt: skip
    assert r.status_code == 201 and r.json()["user"] == user


def test_reservation_is_kept_free_and_only_work_ending_before_it_may_use_it(q: Plinth) -> None:
    h, _group, _ = team(q, 8)
    _, other, _ = team(q, 1)
    # Reserved from now for the other group: 6 of the node's 8 cpu are kept free.
    r = q.c.post("/api/v1/reservations", headers=q.admin, json={
        "group": other, "resources": {"cpu": 6}, "end": iso(300), "reason": "notebook"})  # fmt: skip
    assert r.status_code == 201, r.text
    rsv = r.json()
    assert rsv["id"].startswith("rsv-") and rsv["group"] == other
    job = q.submit(h, {"main": role(HOLD, cpu=4)})
    assert "reservation" in waiting_reason(q, h, job["id"])
    # Cancelling the reservation frees the capacity at once.
    assert q.c.delete(f"/api/v1/reservations/{rsv['id']}", headers=q.admin).status_code == 204
    q.wait(h, job["id"], {"running"})
    q.c.post(f"/api/v1/jobs/{job['id']}/cancel", headers=h)
    q.wait(h, job["id"])

    # Booked an hour ahead: work that ends before it may use the capacity, longer work not.
    r = q.c.post("/api/v1/reservations", headers=q.admin, json={
        "group": other, "resources": {"cpu": 6}, "start": iso(3600), "end": iso(7200)})  # fmt: skip
    assert r.status_code == 201, r.text
    short = q.submit(h, {"main": role("print('short')", cpu=4)}, max_runtime="10m")
    assert q.wait(h, short["id"])["state"] == "succeeded"
    long = q.submit(h, {"main": role("print('long')", cpu=4)}, max_runtime="2h")
    assert "reservation" in waiting_reason(q, h, long["id"])
    listed = q.c.get("/api/v1/reservations", headers=q.admin).json()
    assert [x["id"] for x in listed] == [r.json()["id"]]
    everything = q.c.get("/api/v1/reservations?all=true", headers=q.admin).json()
    assert rsv["id"] not in {x["id"] for x in everything}  # deleted, not just ended


def test_reservation_validation(q: Plinth) -> None:
    h, group, _ = team(q, 1)
    base = {"group": group, "resources": {"cpu": 1}, "end": iso(60)}
    for body, who, status, text in [
        ({**base, "resources": {"cpu": 9}}, q.admin, 422, "no node is large enough"),
        ({**base, "node": "nope"}, q.admin, 422, "no node named"),
        ({**base, "end": iso(-1)}, q.admin, 422, "in the past"),
        (base, h, 403, "admin"),
    ]:
        r = q.c.post("/api/v1/reservations", json=body, headers=who)
        assert r.status_code == status, (body, r.text)
        assert text in str(r.json()["detail"])
    assert q.c.delete("/api/v1/reservations/rsv-none", headers=q.admin).status_code == 404


def test_queue_order_visibility_and_explain(q: Plinth) -> None:
    h1, g1, _ = team(q, 1)
    h2, _g2, _ = team(q, 1)
    blockers = [q.submit(h, {"main": role(HOLD, cpu=1)}) for h in (h1, h2)]
    for b, h in zip(blockers, (h1, h2), strict=True):
        q.wait(h, b["id"], {"running"})
    low = q.submit(h1, {"main": role("print(1)", cpu=1)}, priority="low", name="low")
    other = q.submit(h2, {"main": role("print(1)", cpu=1)}, name="other")
    high = q.submit(h1, {"main": role("print(1)", cpu=1)}, priority="high", name="high")
    waiting_reason(q, h1, high["id"])

    full = q.c.get("/api/v1/queue", headers=q.admin).json()
    ids = [e["id"] for e in full]
    assert set(ids) == {low["id"], other["id"], high["id"]}
    assert ids.index(high["id"]) < ids.index(low["id"])  # priority class ranks it first
    assert [e["position"] for e in full] == [1, 2, 3]
    top = full[0]
    assert set(top["score"]["factors"]) == {
        "aging", "runtime", "size", "fit", "fair_share", "priority"}  # fmt: skip
    assert abs(top["score"]["total"] - sum(
        top["score"]["factors"][k] * top["score"]["weights"][k] for k in top["score"]["factors"]
    )) < 1e-6  # fmt: skip
    entry = next(e for e in full if e["id"] == high["id"])
    assert entry["priority"] == "high" and entry["outcome"] == "wait" and g1 in entry["reason"]

    # A member sees only its group's entries, with their global positions.
    mine = q.c.get("/api/v1/queue", headers=h1).json()
    assert {e["id"] for e in mine} == {low["id"], high["id"]} and all(
        e["group"] == g1 for e in mine
    )
    assert {e["position"] for e in mine} == {e["position"] for e in full if e["group"] == g1}
    assert [e["id"] for e in q.c.get("/api/v1/queue", headers=h2).json()] == [other["id"]]

    ex = q.c.get(f"/api/v1/jobs/{low['id']}/explain", headers=h1).json()
    assert ex["state"] == "pending" and ex["position"] == ids.index(low["id"]) + 1
    assert "score" in ex["text"] and "waits:" in ex["text"] and f"group {g1}" in ex["text"]
    assert "cpu 1/1" in ex["reason"]  # the exact numbers: 1 of 1 cpu in use
    running = q.c.get(f"/api/v1/jobs/{blockers[0]['id']}/explain", headers=h1).json()
    assert running["state"] == "running" and "not waiting" in running["text"]
    # other groups' jobs stay invisible
    assert q.c.get(f"/api/v1/jobs/{other['id']}/explain", headers=h1).status_code == 404


def test_group_status_caps_and_priority_validation(q: Plinth) -> None:
    h, group, user = team(q, 4, max_job={"cpu": 3}, max_runtime="1h", max_workloads_per_user=1)
    g = q.c.get(f"/api/v1/groups/{group}", headers=h).json()
    assert g["max_job"]["cpu"] == 3 and g["max_runtime"] == 3600
    assert g["max_workloads_per_user"] == 1
    for body, text in [
        ({"roles": {"main": role("1", cpu=3.5)}}, "largest-job cap"),
        ({"roles": {"main": role("1", cpu=1)}, "max_runtime": "2h"}, "cap of 3600s"),
        ({"roles": {"main": role("1", cpu=1)}, "priority": "urgent"}, "unknown class 'urgent'"),
    ]:
        r = q.c.post("/api/v1/jobs", json={"name": "t", **body}, headers=h)
        assert r.status_code in (400, 422), r.text
        assert text in str(r.json()["detail"]), r.text
    first = q.submit(h, {"main": role(HOLD, cpu=1)})
    q.wait(h, first["id"], {"running"})
    second = q.submit(h, {"main": role("print(1)", cpu=1)})
    assert f"user {user}: 1/1 workloads" in waiting_reason(q, h, second["id"])
    g = next(x for x in q.c.get("/api/v1/groups", headers=q.admin).json() if x["name"] == group)
    assert g["status"]["used"]["cpu"] == 1 and g["status"]["borrowed"]["cpu"] == 0
    assert [u["name"] for u in g["users"]] == [user] and g["users"][0]["used"]["cpu"] == 1
    # caps can be cleared: the second job starts
    r = q.c.patch(f"/api/v1/groups/{group}", json={"max_workloads_per_user": None},
                  headers=q.admin)  # fmt: skip
    assert r.status_code == 200 and r.json()["max_workloads_per_user"] is None
    assert q.wait(h, second["id"])["state"] == "succeeded"


def test_personal_cap(q_any: Plinth) -> None:
    q = q_any
    _, group, _ = team(q, 4)
    name = f"c-{secrets.token_hex(3)}"
    r = q.c.post("/api/v1/users", json={"name": name, "group": group, "cap": {"cpu": 1}},
                 headers=q.admin)  # fmt: skip
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    # Only cpu is capped: memory and gpu are not (null), and the user sees it.
    me = q.c.get(f"/api/v1/users/{name}", headers=h).json()
    assert me["cap"] == {"cpu": 1.0, "memory": None, "gpu": None}
    # Over the cap it could never start: refused at submit, naming the cap.
    r = q.c.post("/api/v1/jobs", json={"name": "t", "roles": {"main": role("1", cpu=2)}},
                 headers=h)  # fmt: skip
    assert r.status_code == 422 and f"user {name!r}'s personal cap" in r.text, r.text
    assert "cpu 2 > 1" in r.text
    # Within it (memory uncapped), it runs; a second one waits for the first.
    first = q.submit(h, {"main": role(HOLD, cpu=1)})
    q.wait(h, first["id"], {"running"})
    second = q.submit(h, {"main": role("print(1)", cpu=1)})
    assert "personal cap" in waiting_reason(q, h, second["id"])
    # Another member of the group proceeds meanwhile: the cap is the user's, not the group's.
    other, _ = q.member(group)
    third = q.submit(other, {"main": role(HOLD, cpu=1)})
    q.wait(other, third["id"], {"running"})
    assert q.job(h, second["id"])["state"] == "pending"


def test_limits_leave_out_resources_uncapped(q: Plinth) -> None:
    group = f"g-{secrets.token_hex(3)}"
    r = q.c.post("/api/v1/groups", headers=q.admin, json={
        "name": group, "quota": {"cpu": 1, "memory": "1Gi"}, "borrow_limit": {"cpu": 0},
        "lend_limit": {"gpu": 0}})  # fmt: skip
    assert r.status_code == 201, r.text
    g = r.json()
    # cpu=0 written is zero; memory and gpu left out are not limited.
    assert g["borrow_limit"] == {"cpu": 0.0, "memory": None, "gpu": None}
    assert g["lend_limit"] == {"cpu": None, "memory": None, "gpu": 0}
    r = q.c.patch(f"/api/v1/groups/{group}", json={"borrow_limit": {"memory": "2Gi"}},
                  headers=q.admin)  # fmt: skip
    assert r.json()["borrow_limit"] == {"cpu": None, "memory": 2048, "gpu": None}


def test_history_is_a_trace_the_simulator_replays(q: Plinth) -> None:
    from plinth.scheduler import SchedulerConfig
    from plinth.scheduler.simulation import simulate
    from plinth.scheduler.tracefile import load_trace

    h, group, _ = team(q, 2)
    job = q.submit(h, {"main": role("print(1)", replicas=2, cpu=0.5)})
    q.wait(h, job["id"])
    assert q.c.get("/api/v1/queue/history", headers=h).status_code == 403  # admins only
    rows = q.c.get("/api/v1/queue/history?since_s=3600", headers=q.admin).json()
    assert rows[0]["type"] == "cluster"
    trace = load_trace(json.dumps(r) for r in rows)
    assert {n.name for n in trace.nodes} == {"n1"}
    mine = next(it for it in trace.items if it.workload.id == job["id"])
    assert mine.workload.group == group and mine.workload.total.cpu == 1
    assert 0 < mine.actual_s <= mine.workload.max_runtime_s
    figures = simulate(trace.items, trace.nodes, trace.groups, SchedulerConfig())
    assert figures["workloads"] == len(trace.items) and figures["never_started"] == 0
