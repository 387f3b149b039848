"""Reconciliation at server start: pick up where a stopped (or killed) server left off.

* Replicas in state ``running`` keep their stored executor handle: the control loop
  polls them like any other (re-adopted). One whose supervisor is gone without an exit
  status is reported by the executor as lost and handled as a failure (retry or fail).
* Replicas in state ``launching`` were being started when the server stopped; whether
  their process started is unknown, so they are marked ``lost`` and, if started after
  all, stopped.
* Workloads in state ``admitted`` go back to ``pending`` (queue time kept) and start
  again with a new attempt number; this does not count as a failed attempt.
Every change is an event with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from plinth.services import events as ev
from plinth.services.lifecycle import State, transition
from plinth.store.db import Database
from plinth.store.models import Replica, Workload, utcnow

__all__ = ["ReconcileReport", "reconcile"]


@dataclass(frozen=True)
class ReconcileReport:
    readopted: int  # running replicas left to the control loop to poll
    lost: int  # replicas that were being launched
    requeued: int  # workloads put back in the queue


def reconcile(db: Database) -> ReconcileReport:
    """Bring the stored state in line after a restart (see the module docstring)."""
    now = utcnow()
    with db.session() as s:
        lost = 0
        for r in s.scalars(select(Replica).where(Replica.state == "launching")):
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
    return ReconcileReport(int(running or 0), lost, requeued)
