"""Reconciliation at server start: pick up where a stopped (or killed) server left off.

* Replicas in state ``running`` keep their stored executor handle: the control loop
  polls them like any other (re-adopted). One whose supervisor is gone without an exit
  status is reported by the executor as lost and handled as a failure (retry or fail).
* Replicas in state ``launching`` were being started when the server stopped: the
  control loop records the handles of a workload's replicas only after starting
  them. The executor is asked for any process it started for each such replica
  (``Executor.find_launched``, by workload, role, replica and attempt); one still
  alive is stopped at once and its row becomes ``running`` with ``stop_requested``
  and the found handle, so the control loop watches it until it has exited (it
  holds its resources until then) and records it ``stopped`` (one found already
  ended is ``stopped`` at once). Rows with nothing found become ``lost``.
* Workloads in state ``admitted`` go back to ``pending`` (queue time kept) and start
  again with a new attempt number; this does not count as a failed attempt.
Every change is an event with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from plinth.executors.base import Executor
from plinth.services import events as ev
from plinth.services.lifecycle import State, transition
from plinth.store.db import Database
from plinth.store.models import Replica, Workload, utcnow

__all__ = ["ReconcileReport", "reconcile"]

log = logging.getLogger("plinth.reconcile")


@dataclass(frozen=True)
class ReconcileReport:
    readopted: int  # running replicas left to the control loop to poll
    lost: int  # replicas that were being launched (none of them found running)
    requeued: int  # workloads put back in the queue
    orphans_stopped: int = 0  # `launching` replicas found started after all, and stopped


def _stop_found(
    executor: Executor, r: Replica, grace_s: float
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], int | None]]]:
    """Stop every process started for the ``launching`` row `r`.

    Returns (handles of those still alive, [(handle, exit code) of all found])."""
    try:
        found = executor.find_launched(r.workload_id, r.role, r.replica, r.attempt, r.log_path)
    except Exception:
        log.exception("looking for replica %s of %s failed", r.id, r.workload_id)
        return [], []
    live, seen = [], []
    for h in found:
        try:
            # Stop before polling: a supervisor that has not started yet obeys the stop
            # request when it does (see LocalExecutor.find_launched).
            executor.stop(h, grace_s)
        except Exception:
            log.exception("stopping orphaned replica %s failed", r.id)
        try:
            code = executor.poll(h)
        except Exception:  # noqa: BLE001 - unknown: watch it to be safe
            code = None
        if code is None:
            live.append(h)
        seen.append((h, code))
    return live, seen


def reconcile(
    db: Database, executor: Executor | None = None, grace_s: float = 10.0
) -> ReconcileReport:
    """Bring the stored state in line after a restart (see the module docstring).

    `executor` is asked for processes of ``launching`` replicas (none when omitted);
    each one found gets ``stop(handle, grace_s)``."""
    now = utcnow()
    with db.session() as s:
        lost = 0
        orphans = 0
        live_orphans = 0
        for r in s.scalars(select(Replica).where(Replica.state == "launching")):
            live, seen = _stop_found(executor, r, grace_s) if executor is not None else ([], [])
            if seen:
                orphans += 1
                r.stop_requested = True
                r.started_at = now
                ev.record(
                    s, r.workload_id, "orphan_stopped",
                    f"replica {r.role}-{r.replica} (attempt {r.attempt}) was started just "
                    "before the server stopped, without its record; found again and stopped",
                    now, role=r.role, replica=r.replica, attempt=r.attempt,
                )  # fmt: skip
            if live:
                # Watched by the control loop until it has exited; holds its resources.
                r.state = "running"
                r.handle = live[0]
                live_orphans += 1
                continue
            if seen:
                r.state = "stopped"  # it had ended already (or at once)
                r.handle, r.exit_code = seen[0]
                r.finished_at = now
                continue
            r.state = "lost"
            r.finished_at = now
            lost += 1
        requeued = 0
        for w in s.scalars(select(Workload).where(Workload.state == State.ADMITTED.value)):
            t = transition(
                w, State.PENDING,
                "requeued: the server stopped while starting this workload",
                now, event_type="requeued",
            )  # fmt: skip
            w.attempt += 1  # a new attempt number: the old rows are kept
            w.deadline_at = None
            ev.record_transition(s, w.id, t, now)
            requeued += 1
        per_workload = s.execute(
            select(Replica.workload_id, func.count())
            .join(Workload, Replica.workload_id == Workload.id)
            .where(Replica.state == "running", Workload.state == State.RUNNING.value)
            .group_by(Replica.workload_id)
        ).all()
        for wid, n in per_workload:
            ev.record(
                s, wid, "readopted",
                f"server restarted; watching its {n} running replica(s) again", now,
            )  # fmt: skip
        running = s.scalar(
            select(func.count()).select_from(Replica).where(Replica.state == "running")
        )
    return ReconcileReport(int(running or 0) - live_orphans, lost, requeued, orphans)
