"""The observe phase: poll running replicas, record their exits, decide, stop.

``observe(only)`` polls every running replica (or those in `only`: the ones whose
supervisors the exit watcher saw end), then -- only when something happened -- in ONE
write transaction:

* records each exit (``services.exits.replica_outcome``: stopped / succeeded / lost /
  failed), its event and a fair-share usage record;
* decides each affected running workload (``services.exits.decide_after_exits``:
  requeue after a preemption, retry with backoff, fail, succeed) or times it out
  past its deadline, and applies that with ``lifecycle.transition``;
* marks ``stop_requested`` every live replica whose workload or attempt is over.

After the commit the marked replicas get SIGTERM (SIGKILL after ``jobs.grace``).
Returns True when something changed (capacity may have been freed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from plinth.config import ServerConfig
from plinth.services import events as ev
from plinth.services.exits import (
    AttemptReplica,
    ExitDecision,
    Outcome,
    RunningWorkload,
    decide_after_exits,
    replica_outcome,
)
from plinth.services.launching import Launcher
from plinth.services.lifecycle import FINAL, State, transition
from plinth.services.usage import UsageHistory
from plinth.services.wakeups import Wakeups
from plinth.store.db import Database
from plinth.store.models import Replica, Workload, utcnow

__all__ = ["Observer"]


class Observer:
    """See the module docstring."""

    def __init__(
        self,
        db: Database,
        launcher: Launcher,
        usage: UsageHistory,
        cfg: ServerConfig,
        wakeups: Wakeups,
    ) -> None:
        self.db = db
        self.launcher = launcher
        self.usage = usage
        self.cfg = cfg
        self.wakeups = wakeups

    def observe(self, only: set[int] | None = None) -> bool:
        now = utcnow()
        self._abort_cancelled_preparations()
        with self.db.read() as s:
            q = (
                select(
                    Replica.id, Replica.workload_id, Replica.attempt, Replica.handle,
                    Workload.state, Workload.attempt, Workload.deadline_at,
                    Workload.preempted_at,
                )
                .join(Workload, Replica.workload_id == Workload.id)
                .where(Replica.state == "running")
            )  # fmt: skip
            if only is not None:
                q = q.where(Replica.id.in_(only))
            rows = s.execute(q).all()
        launcher = self.launcher
        exits: dict[int, tuple[int, str | None]] = {}
        must_stop: list[int] = []
        timed_out: set[str] = set()
        for rid, wid, r_attempt, handle, w_state, w_attempt, deadline, preempted in rows:
            launcher.watch(handle, rid)  # re-adopted replicas too (no-op when watched)
            code = launcher.poll(handle)
            if code is not None:
                launcher.forget(handle)
                why = launcher.exit_reason(handle) if code != 0 else None
                exits[rid] = (code, why)
                if why == "timeout":
                    timed_out.add(wid)
                continue
            # A preempted workload's replicas too: after a restart the stop must be
            # issued again (the old process's SIGKILL timer is gone).
            over = w_state in FINAL or w_state == State.PENDING or r_attempt != w_attempt
            if over or preempted is not None:
                if rid not in launcher.stopping:
                    must_stop.append(rid)
            elif w_state == State.RUNNING and deadline is not None and now >= deadline:
                timed_out.add(wid)
        if not exits and not must_stop and not timed_out:
            return False
        with self.db.session() as s:
            notes, affected = self._record_exits(s, exits, now)
            for wid in set(affected) | timed_out:
                # Row-locked (PostgreSQL): a concurrent cancel waits for this decision
                # and then sees it, instead of the two overwriting each other.
                w = s.get(Workload, wid, with_for_update=True)
                if w is None or w.state != State.RUNNING:
                    continue
                if wid in timed_out:
                    t = transition(
                        w, State.TIMED_OUT,
                        f"exceeded max_runtime of {w.max_runtime_s:g}s; stopping its replicas",
                        now,
                    )  # fmt: skip
                    ev.record_transition(s, wid, t, now)
                else:
                    self._decide(s, w, notes, now)
            to_stop = self._replicas_to_stop(s, exits) if (must_stop or timed_out or affected) else []
        launcher.stop(to_stop, self.cfg.jobs.grace)
        return True

    def _abort_cancelled_preparations(self) -> None:
        """A workload cancelled while its code is prepared (a slow checkout): end the
        preparation now rather than at its timeout, so its replicas stop holding
        resources. One narrow read, and only while something is being prepared."""
        preparing = self.launcher.preparing()
        if not preparing:
            return
        with self.db.read() as s:
            over = s.scalars(
                select(Workload.id).where(
                    Workload.id.in_(preparing), Workload.state != State.ADMITTED.value
                )
            ).all()
        for wid in over:
            self.launcher.abort_preparing(wid)

    def _record_exits(
        self, s: Any, exits: dict[int, tuple[int, str | None]], now: datetime
    ) -> tuple[dict[int, str], set[str]]:
        """Write each exit; return words per replica and the affected workload ids."""
        notes: dict[int, str] = {}
        affected: set[str] = set()
        ended: list[dict[str, Any]] = []
        for rid, (code, why) in exits.items():
            r = s.get(Replica, rid)
            assert r is not None
            r.exit_code = code
            r.finished_at = now
            if r.started_at is not None:
                ended.append({"workload_id": r.workload_id, "start": r.started_at,
                              "end": now, "resources": dict(r.resources)})  # fmt: skip
            asked = r.stop_requested or rid in self.launcher.stopping or why == "timeout"
            r.state, what = replica_outcome(code, why, asked)
            self.launcher.stopping.discard(rid)
            notes[rid] = what
            ev.record(
                s, r.workload_id, "replica_exited",
                f"replica {r.role}-{r.replica} (attempt {r.attempt}) {what}",
                now, role=r.role, replica=r.replica, attempt=r.attempt, exit_code=code,
            )  # fmt: skip
            affected.add(r.workload_id)
        self.usage.record(s, ended)
        return notes, affected

    def _decide(self, s: Any, w: Workload, notes: dict[int, str], now: datetime) -> None:
        """Apply ``decide_after_exits`` to running workload `w` (ORM row, locked).

        A deployment's replica that ended is not the end of its attempt: the deployment
        stays running and ``services.deployment_restarts`` starts the replica again
        (unless it is being preempted: then it is requeued like any workload)."""
        if w.kind == "deployment" and w.preempted_at is None:
            return
        current = [
            AttemptReplica(r.id, r.role, r.replica, r.state, r.exit_code)
            for r in s.scalars(
                select(Replica).where(Replica.workload_id == w.id, Replica.attempt == w.attempt)
            )
        ]
        view = RunningWorkload(w.preempted_at is not None, w.queued_at, w.failures, w.retries)
        d: ExitDecision = decide_after_exits(
            view, current, notes, self.cfg.jobs.retry_backoff.delay_s, now
        )
        if d.outcome is Outcome.WAIT:
            return
        if d.counts_failure:
            w.failures += 1
        if d.outcome is Outcome.REQUEUE:
            t = transition(w, State.PENDING, d.reason, now, event_type="requeued")
            w.preempted_at = None
        elif d.outcome is Outcome.RETRY:
            t = transition(w, State.PENDING, d.reason, now, event_type="retrying")
            w.not_before = now + timedelta(seconds=d.retry_delay_s)
            self.wakeups.due_in(d.retry_delay_s)
        elif d.outcome is Outcome.FAIL:
            t = transition(w, State.FAILED, d.reason, now)
        else:
            t = transition(w, State.SUCCEEDED, d.reason, now)
        if d.new_attempt:
            w.attempt += 1
            w.deadline_at = None
        ev.record_transition(s, w.id, t, now)

    def _replicas_to_stop(
        self, s: Any, exits: dict[int, tuple[int, str | None]]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Mark every live replica of a workload that is over, or of an attempt that is
        over, ``stop_requested``; return them (id, handle) to stop after the commit."""
        q = (
            select(Replica)
            .join(Workload, Replica.workload_id == Workload.id)
            .where(
                Replica.state == "running",
                or_(
                    Workload.state.not_in([State.RUNNING.value, State.ADMITTED.value]),
                    Replica.attempt != Workload.attempt,
                    Workload.preempted_at.is_not(None),
                ),
            )
        )
        out = []
        for r in s.scalars(q):
            if r.id in exits or r.id in self.launcher.stopping:
                continue
            r.stop_requested = True
            out.append((r.id, dict(r.handle or {})))
        return out

