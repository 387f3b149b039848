"""Admission at submit (``ControlLoop.admit_on_submit``): a job that the scheduler would
admit at once on a quiet server is admitted in its own submit transaction and started
by the request; anything else is left to the control loop, which decides as before."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from plinth.config import ServerConfig
from plinth.services.jobs import insert_job, prepare_job
from plinth.services.specs import JobSpec
from plinth.store.models import Group, Workload

from .rig import CFG, PY, SLEEP, Rig, drive, wait_for

QUICK = "print('hi')"


def _spec(code: str = SLEEP, cpu: float = 0.1) -> JobSpec:
    return JobSpec.model_validate({
        "name": "t",
        "roles": {"main": {"replicas": 2, "resources": {"cpu": cpu, "memory": "32Mi"},
                           "command": [PY, "-c", code]}},
    })  # fmt: skip


def _submit(rig: Rig, loop: Any, spec: JobSpec) -> tuple[str, bool]:
    """Submit as the API does: (job id, whether it was admitted at submit)."""
    with rig.db.read() as s:
        new = prepare_job(s, rig.admin, spec, rig.cfg, loop.capacity())
    with loop.submitting() as admit, rig.db.session() as s:
        w = insert_job(s, new)
        done = admit(s, w, rig.admin.user) if admit is not None else None
    if done is not None:
        loop.start_admitted(done)
    return w.id, done is not None


def test_a_job_on_a_quiet_server_is_running_when_its_submit_returns(rig: Rig) -> None:
    loop = rig.loop()
    loop.keep_snapshot()
    wid, admitted = _submit(rig, loop, _spec())
    assert admitted and loop.on_submit["admitted"] == 1
    job = rig.job(wid)
    assert job.state == "running" and job.started_at is not None
    reps = rig.replicas(wid)
    assert [r.state for r in reps] == ["running", "running"] and all(r.handle for r in reps)
    assert [e.type for e in rig.events(wid)] == ["submitted", "admitted", "running"]


def test_a_stale_snapshot_leaves_the_job_to_the_loop(rig: Rig) -> None:
    loop = rig.loop()
    loop.keep_snapshot()
    with rig.db.session() as s:  # any committed change to what a snapshot is read from
        s.execute(update(Group).values(quota={"cpu": 4, "memory": 8192}))
    wid, admitted = _submit(rig, loop, _spec())
    assert not admitted and loop.on_submit["stale"] == 1
    assert rig.job(wid).state == "pending"
    drive(loop, lambda: rig.job(wid).state == "running", "the loop to admit it")


def test_a_job_never_jumps_the_queue(rig: Rig) -> None:
    loop = rig.loop()
    loop.keep_snapshot()
    _, admitted = _submit(rig, loop, _spec(cpu=2))  # 2 x 2 cpu: the whole node
    assert admitted
    waiting = rig.submit()  # cannot fit: pending
    loop.cycle()
    loop.keep_snapshot()  # a current snapshot, with a pending workload in it
    loop.at_submit.last_submit = -float("inf")  # not a burst
    wid, admitted = _submit(rig, loop, _spec(cpu=0.1))
    assert not admitted and rig.job(wid).state == "pending"
    assert rig.job(waiting).state == "pending"


def test_submissions_in_a_burst_are_left_to_the_loop(rig: Rig) -> None:
    loop = rig.loop()
    loop.keep_snapshot()
    loop.at_submit.last_submit = time.monotonic()  # another submission just now
    _, admitted = _submit(rig, loop, _spec())
    assert not admitted and loop.on_submit["burst"] == 1


def test_when_the_scheduler_would_not_admit_it_the_loop_decides(rig: Rig) -> None:
    loop = rig.loop()
    loop.keep_snapshot()
    _, admitted = _submit(rig, loop, _spec(cpu=2))
    assert admitted
    loop.cycle()
    loop.keep_snapshot()
    loop.at_submit.last_submit = -float("inf")
    wid, admitted = _submit(rig, loop, _spec(cpu=1))  # does not fit beside the first
    assert not admitted and loop.on_submit["left"] == 1
    assert rig.job(wid).state == "pending"


def test_it_can_be_switched_off(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLINTH_ADMIN_TOKEN", "plt_test")
    r = Rig(tmp_path)
    r.cfg = ServerConfig.model_validate({**CFG, "scheduler": {"admit_on_submit": False}})
    try:
        loop = r.loop()
        loop.keep_snapshot()
        wid, admitted = _submit(r, loop, _spec())
        assert not admitted and r.job(wid).state == "pending"
    finally:
        r.cleanup()


def test_an_exit_cycle_looks_only_at_the_replicas_that_ended(rig: Rig) -> None:
    loop = rig.loop()
    quick = rig.submit(QUICK)
    slow = rig.submit()
    drive(loop, lambda: rig.job(quick).state == "running" and rig.job(slow).state == "running",
          "both to run")  # fmt: skip
    (q,) = rig.replicas(quick)
    (w,) = rig.replicas(slow)
    wait_for(lambda: loop.executor.poll(dict(q.handle)) is not None, what="the quick one to exit")
    assert not loop.observe(only={w.id})  # the slow one still runs: nothing to do
    assert rig.job(quick).state == "running"  # the ended one was not looked at
    assert loop.observe(only={q.id})
    assert rig.job(quick).state == "succeeded" and rig.job(slow).state == "running"


def test_a_retry_waiting_out_its_backoff_keeps_newcomers_behind_it(rig: Rig) -> None:
    loop = rig.loop()
    waiting = rig.submit()
    with rig.db.session() as s:  # pending, but not before its backoff ends
        s.execute(
            update(Workload)
            .where(Workload.id == waiting)
            .values(not_before=datetime.now(UTC) + timedelta(hours=1))
        )
    loop.keep_snapshot()
    assert not loop.snapshot_is_current()  # no snapshot kept while anything is pending
    wid, admitted = _submit(rig, loop, _spec())
    assert not admitted and rig.job(wid).state == "pending"
