"""Queueing a prepared job: insert it and, when the scheduler would admit it at once,
admit it in the same transaction (``services.admit_at_submit``); else hand it to the
control loop. The one place the API's submit and rerun go through."""

from __future__ import annotations

from plinth.services.auth import Principal
from plinth.services.control_loop import ControlLoop
from plinth.services.jobs import NewJob, get_job, insert_job
from plinth.store.db import Database
from plinth.store.models import Workload

__all__ = ["queue_job"]


def queue_job(db: Database, loop: ControlLoop, p: Principal, new: NewJob) -> Workload:
    """Insert `new` (validated by ``jobs.prepare_job``/``prepare_rerun``) for caller `p`
    and return the job as committed: pending, or admitted/running when admitted here."""
    with loop.submitting() as admit, db.session() as s:
        w = insert_job(s, new)
        admitted = admit(s, w, p.user) if admit is not None else None
    if admitted is None:
        loop.wake(w)  # committed: the control loop may admit it now
        return w
    loop.start_admitted(admitted)
    with db.read() as s:
        return get_job(s, p, w.id)
