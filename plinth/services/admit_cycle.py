"""The admit phase of a cycle: snapshot, schedule, apply -- in ONE write transaction.

``AdmissionCycle.run()`` reads the quota scheduler's ``Snapshot``
(``services.scheduling.build_snapshot``), runs ``plinth.scheduler.schedule`` and
applies its decisions (``services.apply.apply_decisions``) in one transaction that
holds the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory transaction
lock), so nothing can change between what the scheduler saw and what is written:
concurrent submissions never over-admit. It returns what to launch once committed.

It also keeps what admission needs across cycles: the admission lock (shared with
admission at submit, ``services.admit_at_submit``), the pending workloads' scheduler
values and specs (``SpecCache``), the last waiting reason written per workload, the
fair-share usage history, and the phase timings of the last schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update

from plinth import scheduler as core
from plinth.executors.base import Executor, NodeCapacity
from plinth.services import apply as applying
from plinth.services.apply import Admitted, SpecCache
from plinth.services.cycle_stats import CycleStats
from plinth.services.lifecycle import State
from plinth.services.scheduling import SnapshotInfo, build_snapshot, next_boundary
from plinth.services.usage import UsageHistory
from plinth.services.wakeups import Wakeups
from plinth.store.db import Database
from plinth.store.models import Workload, utcnow

__all__ = ["PG_ADMIT_LOCK", "AdmissionCycle", "anything_pending"]

PG_ADMIT_LOCK = 0x706C6E7461646D  # advisory lock serialising admission across servers
WAITING_WRITES = 100  # waiting reasons written per cycle at most (the queue's head)
TRIM_EVERY = 1000  # admission rounds between trims of the usage history


def anything_pending(s: Any) -> bool:
    """One indexed lookup: is any workload pending?"""
    return (
        s.scalar(select(Workload.id).where(Workload.state == State.PENDING.value).limit(1))
        is not None
    )


class AdmissionCycle:
    """See the module docstring."""

    def __init__(
        self,
        db: Database,
        executor: Executor,
        nodes: Sequence[NodeCapacity],
        home: Path,
        policy: core.SchedulerConfig,
        usage: UsageHistory,
        wakeups: Wakeups,
    ) -> None:
        self.db = db
        self.executor = executor
        self.nodes = tuple(nodes)
        self.home = home
        self.policy = policy
        self.usage = usage
        self.wakeups = wakeups
        # Held while admitting (the loop's cycle or a submit's own admission): the
        # caches below are shared by both.
        self.lock = threading.Lock()
        self.specs = SpecCache()
        # (pending id, attempt) -> its scheduler value (see build_snapshot)
        self.pending_cache: dict[tuple[str, int], core.Workload] = {}
        self._waiting: dict[str, str] = {}  # last waiting reason written per workload
        self._boundary: float | None = None  # next expansion/reservation start or end
        self.last_phases: dict[str, float] = {}  # the last schedule's phase durations (s)
        self.stats = CycleStats()  # phase histograms and preemption counts (/metrics)
        self.pending_left = False  # the last admission round left workloads pending
        # Set by hand_over(): something was committed pending, so the next admission
        # need not first look whether anything waits (one read transaction saved).
        self._submitted = False
        self._rounds = 0

    def hand_over(self, workload: Workload) -> None:
        """A just-submitted `workload` (committed pending): cache its spec and code so
        admitting it needs no read back."""
        if workload.spec is not None:
            self.specs.put(workload.id, workload.spec, workload.code)
            self._submitted = True

    def run(self) -> Admitted | None:
        """One admission round; None when nothing was decided. The common idle case
        (nothing waiting) costs one indexed lookup, not a snapshot, a write lock, nor
        the admission lock (a submit finds it free)."""
        submitted, self._submitted = self._submitted, False
        if not submitted:
            with self.db.read() as s:
                self.pending_left = anything_pending(s)
                if not self.pending_left:
                    return None
        with self.lock:
            return self._admit()

    def _admit(self) -> Admitted | None:
        now = utcnow()
        self._rounds += 1
        with self.db.session() as s:
            if not self.db.is_sqlite:
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_ADMIT_LOCK})
            usage = self.usage.load(s, now)
            if self._rounds % TRIM_EVERY == 1:
                self.usage.trim(s, now)
                usage = self.usage.records()
            info = build_snapshot(s, self.nodes, now, usage=usage, cache=self.pending_cache)
            self._plan_boundary(info.snapshot)
            self.pending_left = bool(info.snapshot.pending)
            if not self.pending_left:
                return None
            decisions = core.schedule(info.snapshot, self.policy)
            self.note_phases(decisions.phases)
            self.pending_left = len(decisions.admissions) < len(info.snapshot.pending)
            self._write_waiting(
                s, {k: v for k, v in decisions.reasons.items() if k in info.pending}
            )
            return self.apply(s, info, decisions, now)

    def apply(
        self, s: Any, info: SnapshotInfo, decisions: core.Decisions, now: datetime
    ) -> Admitted | None:
        """Apply `decisions` in transaction `s` (``services.apply.apply_decisions``)."""
        done = applying.apply_decisions(
            s, info, decisions, now, nodes=self.nodes, executor=self.executor,
            home=self.home, specs=self.specs, grace_s=self.policy.reclaim_grace_s,
        )  # fmt: skip
        if done is not None:
            for plan in done.plans:
                self._waiting.pop(plan.workload_id, None)
            self.stats.record_preemptions(done.preempted)
        return done

    def note_phases(self, phases: dict[str, float]) -> None:
        """Keep a schedule's phase timings (the last ones, and the histograms)."""
        self.last_phases = phases
        self.stats.record_phases(phases)

    def _plan_boundary(self, snapshot: core.Snapshot) -> None:
        """Make sure a cycle runs when the next expansion or reservation starts or ends."""
        t = next_boundary(snapshot)
        if t is not None and t != self._boundary:
            self._boundary = t
            self.wakeups.due_in(t - snapshot.now + 0.01)

    def _write_waiting(self, s: Any, waiting: dict[str, str]) -> None:
        """Record why pending workloads wait, only when the reason changed (few writes)."""
        for wid, why in list(waiting.items())[:WAITING_WRITES]:
            why = f"waiting: {why}"
            if self._waiting.get(wid) != why:
                s.connection().execute(
                    update(Workload)
                    .where(Workload.id == wid, Workload.state == State.PENDING.value)
                    .values(reason=why)
                )
                self._waiting[wid] = why
