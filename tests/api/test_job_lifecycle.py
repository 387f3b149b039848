"""Job lifecycle over a real app, database and subprocesses."""

from __future__ import annotations

import pytest

from .conftest import Plinth, make_plinth, role, wait_for


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_success_with_logs_events_and_replicas(plinth: Plinth) -> None:
    h, group = plinth.member()
    job = plinth.submit(
        h,
        {"main": role("print('hello from', __import__('os').environ['PLINTH_ROLE'])", 2)},
        name="hello",
    )
    # Pending, or already admitted and started by admission at submit when the
    # loop's snapshot was current (docs/architecture.md).
    assert job["state"] in ("pending", "running") and (job["group"], job["attempt"]) == (group, 0)
    done = plinth.wait(h, job["id"])
    assert done["state"] == "succeeded", done
    assert done["created_at"] <= done["admitted_at"] <= done["started_at"] <= done["finished_at"]
    types = _types(plinth.events(h, job["id"]))
    assert types[:3] == ["submitted", "admitted", "running"] and types[-1] == "succeeded"
    assert types.count("replica_exited") == 2
    for i in range(2):
        assert plinth.log(h, job["id"], "main", i) == "hello from main\n"
    r = plinth.c.get(f"/api/v1/jobs/{job['id']}/logs/main/0", headers=h)
    assert r.headers["X-Log-Complete"] == "true" and r.headers["X-Log-Offset"] == str(
        len(r.content)
    )
    reps = plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()
    assert [(x["role"], x["replica"], x["state"], x["exit_code"]) for x in reps] == [
        ("main", 0, "succeeded", 0),
        ("main", 1, "succeeded", 0),
    ]
    assert all(x["log_size"] > 0 for x in reps)
    listed = plinth.c.get("/api/v1/jobs?state=succeeded", headers=h).json()
    assert [j["id"] for j in listed] == [job["id"]]


def test_failing_replica_is_retried_then_fails_with_reasons(plinth: Plinth) -> None:
    h, _ = plinth.member()
    code = (
        "import os,sys; print('attempt', os.environ['PLINTH_ATTEMPT']);"
        "sys.exit(3 if os.environ['PLINTH_REPLICA'] == '1' else 0)"
    )
    job = plinth.submit(h, {"worker": role(code, 2)}, retries=2)
    done = plinth.wait(h, job["id"])
    assert done["state"] == "failed", done
    assert (done["attempt"], done["failures"]) == (2, 3)
    assert (
        "worker-1 exited with status 3" in done["reason"] and "failed 3 attempts" in done["reason"]
    )
    evs = plinth.events(h, job["id"])
    retrying = [e["reason"] for e in evs if e["type"] == "retrying"]
    assert len(retrying) == 2
    assert "replica worker-1 exited with status 3; retry 1/2 in 0.05s" == retrying[0]
    assert "retry 2/2 in 0.1s" in retrying[1]
    # every attempt's log is kept
    for attempt in range(3):
        assert plinth.log(h, job["id"], "worker", 1, attempt) == f"attempt {attempt}\n"
    reps = plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()
    assert sorted({r["attempt"] for r in reps}) == [0, 1, 2]


def test_whole_gang_is_stopped_when_one_replica_fails(plinth: Plinth) -> None:
    h, _ = plinth.member()
    job = plinth.submit(
        h,
        {
            "ps": role("import time; print('up', flush=True); time.sleep(60)"),
            "worker": role("import sys; sys.exit(5)"),
        },
    )
    done = plinth.wait(h, job["id"])
    assert done["state"] == "failed" and "worker-0 exited with status 5" in done["reason"]
    reps = {
        r["role"]: r for r in plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()
    }

    wait_for(
        lambda: (
            plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()[0]["state"]
            == "stopped"
        ),
        10,
        "ps to be stopped",
    )
    assert reps["worker"]["state"] == "failed"


def test_max_runtime_ends_timed_out(plinth: Plinth) -> None:
    h, _ = plinth.member()
    job = plinth.submit(h, {"main": role("import time; time.sleep(60)")}, max_runtime="0.5s")
    done = plinth.wait(h, job["id"])
    assert done["state"] == "timed_out"
    assert "exceeded max_runtime of 0.5s" in done["reason"]
    assert "timed_out" in _types(plinth.events(h, job["id"]))


def test_cancel_stops_replicas_and_is_idempotent(plinth: Plinth) -> None:
    h, _ = plinth.member()
    code = (
        "import signal,time,sys; signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(0)));"
        "print('ready', flush=True); time.sleep(60)"
    )
    job = plinth.submit(h, {"main": role(code)})
    plinth.wait(h, job["id"], {"running"})

    wait_for(lambda: "ready" in plinth.log(h, job["id"], "main", 0), 10, "replica ready")
    r = plinth.c.post(f"/api/v1/jobs/{job['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    wait_for(
        lambda: (
            plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()[0]["state"]
            == "stopped"
        ),
        10,
        "replica stopped",
    )
    assert "got TERM" in plinth.log(h, job["id"], "main", 0)
    again = plinth.c.post(f"/api/v1/jobs/{job['id']}/cancel", headers=h).json()
    assert again["state"] == "cancelled" and again["finished_at"] == r.json()["finished_at"]
    assert _types(plinth.events(h, job["id"])).count("cancelled") == 1


def test_cancel_ignoring_sigterm_is_killed_after_grace(plinth: Plinth) -> None:
    h, _ = plinth.member()
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    job = plinth.submit(h, {"main": role(code)})

    wait_for(
        lambda: (
            plinth.job(h, job["id"])["state"] == "running"
            and "ready" in plinth.log(h, job["id"], "main", 0)
        ),
        10,
        "replica ready",
    )
    plinth.c.post(f"/api/v1/jobs/{job['id']}/cancel", headers=h)
    rep = wait_for(
        lambda: (
            (x := plinth.c.get(f"/api/v1/jobs/{job['id']}/replicas", headers=h).json()[0])["state"]
            == "stopped"
            and x
        ),
        10,
        "replica killed",
    )
    assert rep["exit_code"] == -9


def test_pending_job_waits_with_a_reason_and_starts_when_capacity_frees(plinth: Plinth) -> None:
    h, _ = plinth.member()
    # the node has 2 GPUs: the first job holds both
    blocker = plinth.submit(
        h, {"main": {**role("import time; time.sleep(60)"), "resources": {"cpu": 0.1, "gpu": 2}}}
    )
    plinth.wait(h, blocker["id"], {"running"})
    waiting = plinth.submit(
        h, {"main": {**role("print('ok')"), "resources": {"cpu": 0.1, "gpu": 1}}}
    )

    j = wait_for(
        lambda: (x := plinth.job(h, waiting["id"]))["reason"].startswith("waiting") and x,
        10,
        "waiting reason",
    )
    # the quota scheduler's reason, with numbers: the group's gpu use and what is idle
    assert j["state"] == "pending" and "gpu 2/" in j["reason"], j["reason"]
    plinth.c.post(f"/api/v1/jobs/{blocker['id']}/cancel", headers=h)
    assert plinth.wait(h, waiting["id"])["state"] == "succeeded"


def test_command_not_found_fails_with_reason(plinth: Plinth) -> None:
    h, _ = plinth.member()
    job = plinth.submit(
        h, {"main": {"command": ["/nonexistent/program"], "resources": {"cpu": 0.1}}}
    )
    done = plinth.wait(h, job["id"])
    assert done["state"] == "failed" and "main-0" in done["reason"]


def test_logs_can_be_followed_by_offset_while_running(plinth: Plinth, tmp_path) -> None:
    h, _ = plinth.member()
    go = tmp_path / "go"
    code = (
        "import os, time; print('first', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('second', flush=True)\n"
    )
    job = plinth.submit(h, {"main": role(code)})
    url = f"/api/v1/jobs/{job['id']}/logs/main/0"
    r = wait_for(
        lambda: (x := plinth.c.get(url, headers=h)).status_code == 200 and x.text and x,
        10, "first output",
    )  # fmt: skip
    assert r.text == "first\n" and r.headers["X-Log-Complete"] == "false"
    offset = int(r.headers["X-Log-Offset"])
    assert offset == len("first\n")
    go.touch()
    plinth.wait(h, job["id"])
    r = plinth.c.get(f"{url}?offset={offset}", headers=h)
    assert r.text == "second\n" and r.headers["X-Log-Complete"] == "true"
    r = plinth.c.get(f"{url}?offset={int(r.headers['X-Log-Offset'])}", headers=h)
    assert r.text == "" and r.headers["X-Log-Complete"] == "true"


def test_replica_exit_wakes_the_loop_without_the_poll_tick(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With an hour between polls, only the exit events can move these jobs along:
    # the second job needs the GPUs the first one holds until it exits.
    client, home = make_plinth(tmp_path, monkeypatch, scheduler={"poll_interval": "1h"})
    with client:
        p = Plinth(client, home)
        h, _ = p.member()
        gpus = {"cpu": 0.1, "gpu": 2}
        first = p.submit(h, {"main": {**role("print('first')"), "resources": gpus}})
        second = p.submit(h, {"main": {**role("print('second')"), "resources": gpus}})
        assert p.wait(h, first["id"], timeout=30)["state"] == "succeeded"
        assert p.wait(h, second["id"], timeout=30)["state"] == "succeeded"
        assert p.log(h, second["id"], "main", 0) == "second\n"
        # a retry after its backoff, and a deadline, need no tick either
        retried = p.submit(h, {"main": role("import sys; sys.exit(2)")}, retries=1)
        done = p.wait(h, retried["id"], timeout=30)
        assert (done["state"], done["failures"]) == ("failed", 2)
        slow = p.submit(h, {"main": role("import time; time.sleep(60)")}, max_runtime="0.5s")
        assert p.wait(h, slow["id"], timeout=30)["state"] == "timed_out"


def test_a_job_submitted_to_a_quiet_server_is_running_when_its_submit_returns(
    plinth: Plinth,
) -> None:
    loop = plinth.c.app.state.plinth.loop
    wait_for(loop.snapshot_is_current, what="the loop to read its snapshot ahead")
    job = plinth.submit(plinth.admin, {"main": role("print('quick')", replicas=2)})
    assert job["state"] == "running" and job["started_at"] is not None
    done = plinth.wait(plinth.admin, job["id"])
    assert done["state"] == "succeeded"
    assert _types(plinth.events(plinth.admin, job["id"]))[:3] == [
        "submitted",
        "admitted",
        "running",
    ]
    metrics = plinth.c.get("/metrics").text
    assert 'plinth_admit_on_submit_total{outcome="admitted"} 1.0' in metrics
