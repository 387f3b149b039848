"""Admission at submit: admit a job in its own submit transaction when the loop would.

Invariants (why this can never decide differently from the loop):

1. It only ever uses a snapshot the loop's thread read while idle (``keep_snapshot``)
   together with the database's commit counters of the snapshot's tables noted
   *before* that read (``Database.versions``); the snapshot is used only while the
   counters are unchanged, i.e. while a read now would give the same snapshot.
2. It runs under the admission lock (``AdmissionCycle.lock``, never waited for: a busy
   loop means "leave it to the loop") and the database's write lock (SQLite: the
   submit's BEGIN IMMEDIATE; PostgreSQL: the admission advisory lock, tried, never
   waited for). The admission lock is held until the submit's transaction has
   committed and the counters have moved, so no other admission can use the
   snapshot meanwhile.
3. The kept snapshot has nothing pending, and the scheduler must admit exactly the
   submitted job, alone, without preempting anything; anything else (a stale
   snapshot, a queue, a preemption, a burst of submissions less than
   ``BURST_GAP_S`` apart) is left to the loop.
4. Decisions are applied by the same code as the loop's (``apply_decisions``), in a
   savepoint: should admitting fail, the submission itself still stands.

It relies on one server per database, as the executor does: the counters are this
process's. The request thread then starts the job (``Launcher.launch``: code is
prepared in a worker thread).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from plinth import scheduler as core
from plinth.services.admit_cycle import PG_ADMIT_LOCK, AdmissionCycle, anything_pending
from plinth.services.apply import Admitted
from plinth.services.scheduling import (
    SNAPSHOT_TABLES,
    SnapshotInfo,
    build_snapshot,
    epoch,
    pending_workload,
)
from plinth.store.db import Database
from plinth.store.models import Workload, utcnow

__all__ = ["BURST_GAP_S", "OUTCOMES", "AdmitAtSubmit"]

log = logging.getLogger("plinth.control_loop")

# Submissions closer together than this are a burst: the loop admits them in batches
# (one snapshot for many) instead of each in its own request, and reads no snapshot
# ahead meanwhile (each commit would make it stale at once).
BURST_GAP_S = 0.02
#: What admission at submit did with a submission: admitted it; left it to the loop
#: because the scheduler said so (left), submissions came close together (burst), the
#: loop was admitting (busy) or the kept snapshot was not current (stale).
OUTCOMES = ("admitted", "left", "burst", "busy", "stale")


@dataclass(frozen=True)
class _KeptSnapshot:
    """A snapshot read while idle, with the commit counters noted before the read."""

    versions: tuple[int, ...]
    info: SnapshotInfo


class AdmitAtSubmit:
    """See the module docstring. `enabled`: config ``scheduler.admit_on_submit``."""

    def __init__(self, db: Database, cycle: AdmissionCycle, enabled: bool) -> None:
        self.db = db
        self.cycle = cycle
        self.enabled = enabled
        self._kept: _KeptSnapshot | None = None
        self.last_submit = -float("inf")  # when a submit last came (monotonic)
        self.counts: dict[str, int] = defaultdict(int)
        self._count_lock = threading.Lock()

    def in_burst(self) -> bool:
        """Whether submissions are coming in a burst right now (see ``BURST_GAP_S``)."""
        return time.monotonic() - self.last_submit < BURST_GAP_S

    @contextmanager
    def submitting(self) -> Iterator[Callable[[Session, Workload, str], Admitted | None] | None]:
        """Around a submit's write transaction: yields ``admit(s, w, user)`` that admits
        job `w`, just inserted in transaction `s` by `user`, right there -- or None when
        submissions come in a burst or the loop is admitting.

        Open it before the transaction and close it after (invariant 2). ``admit``
        returns None (the loop then decides as usual) unless invariants 1 and 3 hold.
        Launch what it returns once the transaction has committed."""
        if not self.enabled:
            yield None
            return
        now = time.monotonic()
        previous, self.last_submit = self.last_submit, now
        if now - previous < BURST_GAP_S:
            self._count("burst")
            yield None
            return
        # Never wait: a submit is not to queue behind the loop's cycle.
        if not self.cycle.lock.acquire(blocking=False):
            self._count("busy")
            yield None
            return
        try:
            yield self._admit_at_submit
        finally:
            self.cycle.lock.release()

    def _admit_at_submit(self, s: Session, w: Workload, user: str) -> Admitted | None:
        try:
            if not self.db.is_sqlite:
                # Serialises with the loop's and other servers' admissions (first: the
                # counters are only looked at under it).
                if not s.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                {"k": PG_ADMIT_LOCK}):  # fmt: skip
                    self._count("busy")
                    return None
            elif not self.db.holds_write_lock(s):
                self._count("busy")  # SQLite's lock taken without ours (a timeout): no proof
                return None
            kept = self._current_kept()
            if kept is None:
                # Reading a snapshot here would cost what the loop's cycle costs.
                self._count("stale")
                return None
            with s.begin_nested():  # invariant 4
                done = self._admit_one(s, w, user, kept.info)
            self._count("admitted" if done is not None else "left")
            return done
        except Exception:
            log.exception("admission at submit of %s failed; left to the control loop", w.id)
            return None

    def _admit_one(self, s: Session, w: Workload, user: str, base: SnapshotInfo) -> Admitted | None:
        # Nothing committed since the kept snapshot `base` was read: it plus `w` is what
        # a read now would give.
        now = utcnow()
        t_now = epoch(now)
        snapshot = dataclasses.replace(
            base.snapshot,
            now=t_now,
            expansions=tuple(e for e in base.snapshot.expansions if e.end > t_now),
            reservations=tuple(r for r in base.snapshot.reservations if r.end > t_now),
            pending=(pending_workload(w, w.spec["group"], user),),
            usage_history=self.cycle.usage.records(),
        )
        decisions = core.schedule(snapshot, self.cycle.policy)
        if decisions.preemptions or [a.workload_id for a in decisions.admissions] != [w.id]:
            return None
        info = dataclasses.replace(base, snapshot=snapshot, pending={w.id: w.attempt})
        self.cycle.specs.put(w.id, w.spec, w.code)
        self.cycle.note_phases(decisions.phases)
        return self.cycle.apply(s, info, decisions, now)

    def _count(self, outcome: str) -> None:
        with self._count_lock:  # request threads count concurrently
            self.counts[outcome] += 1

    def snapshot_is_current(self) -> bool:
        """Whether the kept snapshot is what a read now would give, with nothing pending
        in it (admission at submit can use it)."""
        return self._current_kept() is not None

    def _current_kept(self) -> _KeptSnapshot | None:
        kept = self._kept  # one read: the loop may replace it meanwhile
        if (
            kept is None
            or kept.info.snapshot.pending
            or not self.cycle.usage.loaded
            or self.db.versions.get(SNAPSHOT_TABLES) != kept.versions
        ):
            return None
        return kept

    def forget_snapshot(self) -> None:
        """Drop the kept snapshot (the nodes changed: it has the old ones)."""
        self._kept = None

    def keep_snapshot(self) -> None:
        """Read a snapshot ahead for admission at submit, unless the kept one is current.
        Called from the loop's thread only (no admission lock: the kept snapshot is
        replaced in one assignment)."""
        if not self.enabled:
            return
        if self.cycle.pending_left:
            # Useless at submit (no job jumps the queue): not worth a read.
            self._kept = None
            return
        versions = self.db.versions.get(SNAPSHOT_TABLES)  # before the read: invariant 1
        if self._kept is not None and self._kept.versions == versions:
            return
        with self.db.read() as s:
            # Pending work a snapshot leaves out (a retry in its backoff) counts too: a
            # submit must not go ahead of it once its backoff ends.
            if anything_pending(s):
                self._kept = None
                return
            now = utcnow()
            self.cycle.usage.load(s, now)
            info = build_snapshot(s, self.cycle.nodes, now)
        self._kept = _KeptSnapshot(versions, info)
