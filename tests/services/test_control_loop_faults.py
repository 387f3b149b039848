"""The control loop against faults: a crash between launch and recording, a replica
stopped by someone else's signal, a failing poll, a concurrent cancel.

Real parts: a SQLite database (PostgreSQL where the race needs it), the real local
executor and real supervised subprocesses; the loop is driven synchronously with
``cycle()`` so each step is deterministic.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from plinth.executors.local import LocalExecutor
from plinth.services import admit_cycle, apply
from plinth.services.jobs import cancel_job
from plinth.services.launching import Launcher
from plinth.services.reconcile import reconcile
from plinth.store.models import Workload

from .rig import Rig, drive, wait_for


class _Crash(BaseException):
    """Stands for the server dying (kill -9): nothing after it runs."""


def _crash_before_recording(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, wids: list[str]
) -> list[dict[str, Any]]:
    """One cycle admits and starts `wids`, then the server dies before recording the
    handles. Returns the handles of the started supervisors, once they are up."""

    def crash(self: Launcher, *a: Any, **k: Any) -> bool:
        raise _Crash

    with monkeypatch.context() as m:
        m.setattr(Launcher, "record_launch", crash)
        with pytest.raises(_Crash):
            rig.loops[-1].admit_and_launch()
    reps = [r for w in wids for r in rig.replicas(w)]
    assert {r.state for r in reps} == {"launching"}
    old = LocalExecutor(rig.cfg_nodes())

    def found() -> list[dict[str, Any]]:
        return [h for r in reps for h in old.find_launched(r.workload_id, r.role, r.replica,
                                                            r.attempt, r.log_path)]  # fmt: skip

    assert len(found()) == len(reps)  # the supervisors run, unseen by the database
    # A restart takes longer than a supervisor's start: let them come up.
    wait_for(lambda: all(h["supervisor_pid"] for h in found()), what="supervisors to start")
    return found()


def test_replica_started_but_unrecorded_at_a_crash_is_found_and_stopped(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.loop()
    wid = rig.submit(replicas=2)
    started = _crash_before_recording(rig, monkeypatch, [wid])

    # Restart: a fresh executor, reconcile, a fresh loop.
    ex = LocalExecutor(rig.cfg_nodes())
    report = reconcile(rig.db, ex, rig.cfg.jobs.grace)
    assert (report.orphans_stopped, report.lost, report.requeued) == (2, 0, 1)
    reps = rig.replicas(wid)
    assert all(r.state in ("running", "stopped") and r.stop_requested and r.handle for r in reps)
    assert rig.job(wid).state == "pending" and rig.job(wid).attempt == 1
    loop = rig.loop(ex)
    drive(loop, lambda: all(r.state == "stopped" for r in rig.replicas(wid) if r.attempt == 0),
          "the orphans to be stopped")  # fmt: skip
    for h in started:  # the very processes that were started before the crash
        assert ex.poll(h) is not None
    # The job then runs exactly once more, as attempt 1.
    drive(loop, lambda: rig.job(wid).state == "running", "the requeued job to run")
    live = [r for r in rig.replicas(wid) if r.state == "running"]
    assert [r.attempt for r in live] == [1, 1]
    assert "orphan_stopped" in [e.type for e in rig.events(wid)]


def test_launch_records_each_workload_before_starting_the_next(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = rig.loop()
    a, b = rig.submit(), rig.submit()
    seen: list[dict[str, str]] = []
    real_start = Launcher.start_plan

    def start(self: Launcher, plan: Any) -> Any:
        with rig.db.read() as s:
            seen.append({i: st for i, st in s.execute(select(Workload.id, Workload.state))})
        return real_start(self, plan)

    monkeypatch.setattr(Launcher, "start_plan", start)
    loop.admit_and_launch()
    assert len(seen) == 2
    # When the second workload starts, the first is already recorded as running.
    first = next(w for w in (a, b) if seen[0][w] == "admitted")
    assert seen[1][first] == "running"


def _supervisor_pid(rig: Rig, wid: str) -> int:
    (r,) = [r for r in rig.replicas(wid) if r.state == "running"]
    ident = (Path(r.handle["status_dir"]) / "supervisor").read_text().split()
    return int(ident[0])


def test_a_supervisor_stopped_by_a_foreign_signal_fails_the_job(rig: Rig) -> None:
    loop = rig.loop()
    wid = rig.submit(retries=1)
    drive(loop, lambda: rig.job(wid).state == "running", "the job to run")
    drive(loop, lambda: (Path(rig.replicas(wid)[0].handle["status_dir"]) / "pid").exists(),
          "the command to start")  # fmt: skip
    os.kill(_supervisor_pid(rig, wid), signal.SIGTERM)  # e.g. `systemctl stop`, not Plinth
    # A failure: the retry applies (attempt 1 runs) ...
    drive(loop, lambda: rig.job(wid).attempt == 1 and rig.job(wid).state == "running",
          "the retry to run")  # fmt: skip
    first = rig.replicas(wid)[0]
    assert first.state == "failed"
    retry = [e for e in rig.events(wid) if e.type == "retrying"]
    assert retry and "did not send" in retry[0].reason
    # ... and with no retries left the job fails instead of running until max_runtime.
    drive(loop, lambda: (Path(rig.replicas(wid)[-1].handle["status_dir"]) / "pid").exists(),
          "the retry's command to start")  # fmt: skip
    os.kill(_supervisor_pid(rig, wid), signal.SIGTERM)
    drive(loop, lambda: rig.job(wid).state == "failed", "the job to fail")
    assert "did not send" in rig.job(wid).reason


def test_a_cancelled_replica_is_still_stopped_not_failed(rig: Rig) -> None:
    loop = rig.loop()
    wid = rig.submit(retries=2)
    drive(loop, lambda: rig.job(wid).state == "running", "the job to run")
    with rig.db.session() as s:
        cancel_job(s, rig.admin, wid)
    drive(loop, lambda: rig.replicas(wid)[0].state not in ("running", "launching"),
          "the replica to end")  # fmt: skip
    assert rig.replicas(wid)[0].state == "stopped"
    assert rig.job(wid).state == "cancelled"


def test_a_failing_poll_does_not_declare_the_replica_lost(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = LocalExecutor(rig.cfg_nodes())
    loop = rig.loop(ex)
    wid = rig.submit(retries=3)
    drive(loop, lambda: rig.job(wid).state == "running", "the job to run")
    real_poll = ex.poll
    failures = {"n": 0}

    def poll(handle: dict) -> int | None:
        if failures["n"] < 3:
            failures["n"] += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_poll(handle)

    monkeypatch.setattr(ex, "poll", poll)
    for _ in range(3):
        loop.observe()
    assert loop.poll_errors == 3
    (r,) = rig.replicas(wid)
    assert r.state == "running" and r.exit_code is None
    assert (rig.job(wid).state, rig.job(wid).attempt, rig.job(wid).failures) == ("running", 0, 0)
    loop.observe()  # polls work again: the replica is seen running, as it is
    assert [x.state for x in rig.replicas(wid)] == ["running"]


@pytest.fixture
def pg_rig(
    tmp_path: Path, pg_schemas: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    monkeypatch.setenv("PLINTH_ADMIN_TOKEN", "plt_test")
    r = Rig(tmp_path, pg_schemas())  # a fresh schema: the ids below assume an empty database
    try:
        yield r
    finally:
        r.cleanup()


@pytest.mark.parametrize("when", ["after_snapshot", "before_apply"])
def test_admission_drops_a_workload_cancelled_concurrently(
    pg_rig: Rig, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    rig = pg_rig
    loop = rig.loop()
    wid = rig.submit()

    def cancel() -> None:
        # A cancel commits while the admission transaction runs (a cancel takes no
        # admission lock on PostgreSQL).
        with rig.db.session() as s:
            cancel_job(s, rig.admin, wid)

    if when == "after_snapshot":
        real = admit_cycle.build_snapshot

        def hook(*a: Any, **k: Any) -> Any:
            info = real(*a, **k)
            cancel()
            return info

        monkeypatch.setattr(admit_cycle, "build_snapshot", hook)
    else:  # between reading the row and its state-guarded UPDATE
        real_apply = apply.guarded_transition

        def hook(*a: Any, **k: Any) -> Any:
            cancel()
            return real_apply(*a, **k)

        monkeypatch.setattr(apply, "guarded_transition", hook)
    loop.admit_and_launch()
    assert rig.job(wid).state == "cancelled"
    assert rig.replicas(wid) == []  # nothing recorded, nothing started
    assert [e.type for e in rig.events(wid)] == ["submitted", "cancelled"]


def test_cancel_does_not_overwrite_a_just_finished_job(
    pg_rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plinth.services import jobs

    rig = pg_rig
    rig.loop()
    wid = rig.submit()
    real_get = jobs.get_job

    def get_then_finish(session: Any, p: Any, job_id: str) -> Any:
        w = real_get(session, p, job_id)  # read as pending ...
        with rig.db.session() as s2:  # ... then the job ends, committed by another writer
            s2.get(Workload, job_id).state = "failed"
        return w

    monkeypatch.setattr(jobs, "get_job", get_then_finish)
    with rig.db.session() as s:
        w = cancel_job(s, rig.admin, wid)
        assert w.state == "failed"
    assert rig.job(wid).state == "failed"
    assert "cancelled" not in [e.type for e in rig.events(wid)]
