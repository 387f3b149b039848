"""The control loop: admit pending workloads, launch their replicas, watch them.

One thread runs ``cycle()`` whenever it is woken (a submit, a cancel: ``wake()``) and
at least every ``scheduler.poll_interval`` seconds (to poll replicas and deadlines).
A cycle has two phases:

observe
    poll every running replica -- or, in a cycle woken by replica exits alone, the
    replicas whose supervisors the exit watcher saw end (a full look still comes at
    least every poll interval); record exits; decide each affected workload
    (succeeded / retry with backoff / failed / timed_out); stop the replicas that
    must stop (the workload finished, was cancelled, or its attempt is over).
    One read, and one write transaction only when something changed.
admit
    build the quota scheduler's ``Snapshot`` (``services.scheduling``: nodes, groups,
    users, expansions, reservations, running workloads from their live replicas,
    pending workloads in queue order, usage history), run ``plinth.scheduler.schedule``
    and apply its decisions in ONE transaction under the write lock (state
    ``admitted``, replica rows with node, GPU indices, port and log path, a
    workload-scoped token; preemptions; waiting reasons). Then per admitted
    workload: prepare its code, one ``executor.launch`` per replica, and one
    transaction (for that workload alone) recording the handles and the state
    ``running``.

Preemption (reclaim): the workload stays ``running`` with ``preempted_at`` set (event
``preempted`` with the scheduler's reason) and its replicas get SIGTERM, SIGKILL after
``scheduler.reclaim_grace``; it keeps holding its resources until they have exited,
then returns to ``pending`` (event ``requeued``) with its original ``queued_at``,
without using a retry. Every ended replica adds a usage record (fair share).

Admission at submit (``submitting``, config ``scheduler.admit_on_submit``): when the
loop is idle and nothing is pending it keeps the snapshot it last read, with the
database's commit counters of the tables it came from (``Database.versions``). A
submit opens ``submitting()`` (the admission lock, never waited for) around its write
transaction; finding the counters unchanged it runs the same ``schedule`` on that
snapshot plus its own job and applies the decision with the same code, in its own
transaction. The lock is held until that transaction has committed and the counters
have moved, so no other admission can use the snapshot meanwhile. The request thread
then starts the job (the loop's thread does, when there is code to prepare). The
result is what the loop would have decided a moment later, without the hand-over and
the re-read. Anything else (a stale snapshot, a queue, a preemption, a burst of
submissions) is left to the loop. It relies on one server per database, as the
executor does: the counters are this process's.

Writing the replica rows before launching means a crash between the two leaves
rows in state ``launching``, which ``reconcile`` at the next start resolves: it asks
the executor for any process started for them (``Executor.find_launched``) and stops
it. Handles are recorded per workload, right after its launches, so such a crash
leaves at most one workload's replicas unrecorded per launching thread.
The executor is called from this thread, from a submit's request thread (``launch``
and ``allocate_port`` only: executors must allow that) and from ``reconcile`` before
the loop starts.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, or_, select, text, update
from sqlalchemy.orm import Session

from plinth import scheduler as core
from plinth.config import ServerConfig
from plinth.executors.base import EXIT_LOST, Executor, NodeCapacity, ReplicaLaunch, describe_exit
from plinth.services import events as ev
from plinth.services.admission import NodeFree, ReplicaDemand
from plinth.services.auth import hash_token, new_token
from plinth.services.exit_watcher import ExitWatcher
from plinth.services.files import archive_limits
from plinth.services.jobs import replica_demands
from plinth.services.lifecycle import FINAL, State, transition
from plinth.services.replica_env import ReplicaAddress, replica_env
from plinth.services.scheduling import (
    LIVE_REPLICA_STATES,
    SNAPSHOT_TABLES,
    SnapshotInfo,
    apply_holds,
    build_snapshot,
    epoch,
    next_boundary,
    pending_workload,
    resources,
)
from plinth.services.workdirs import CodeError, log_path, prepare_code
from plinth.store.db import Database
from plinth.store.models import Event, Group, Replica, Token, UsageRecord, Workload, utcnow

__all__ = ["LIVE_REPLICA_STATES", "ControlLoop"]


def _checked(info: SnapshotInfo, admissions: list[core.Admission]) -> list[core.Admission]:
    """The apply step's own guard: admissions that keep every node within its capacity.

    The scheduler guarantees this; checking again here (cheap) means a bug there can
    never over-commit a node: an offending admission is dropped and logged.
    """
    used: dict[str, list[float]] = {n.name: [0.0, 0.0, 0.0] for n in info.snapshot.nodes}
    cap = {n.name: n.capacity.as_tuple() for n in info.snapshot.nodes}
    for w in info.snapshot.running:
        for node, v in w.node_usage().items():
            u = used.setdefault(node, [0.0, 0.0, 0.0])
            for k in range(3):
                u[k] += v[k]
    ok = []
    pending = {w.id: w for w in info.snapshot.pending}
    for a in admissions:
        w = pending.get(a.workload_id)
        if w is None:
            log.error("scheduler admitted %s, which is not pending; ignored", a.workload_id)
            continue
        per_role = {r.name: r.resources.as_tuple() for r in w.roles}
        trial = {k: list(v) for k, v in used.items()}
        fits = True
        for role, nodes in a.placement.items():
            for node in nodes:
                u = trial.get(node)
                if u is None:
                    fits = False
                    break
                for k in range(3):
                    u[k] += per_role[role][k]
        fits = fits and all(
            trial[n][0] <= cap[n][0] + 1e-6 and trial[n][1] <= cap[n][1] and trial[n][2] <= cap[n][2]
            for n in trial if n in cap
        )  # fmt: skip
        if not fits:
            log.error("scheduler admission of %s would over-commit a node; ignored", w.id)
            continue
        used = trial
        ok.append(a)
    return ok


log = logging.getLogger("plinth.control_loop")

ADMIT_BATCH = 32  # workloads admitted per transaction; more are taken in the next round
# Submissions closer together than this are a burst: the loop admits them in batches
# (one snapshot for many) instead of each in its own request, and reads no snapshot
# ahead meanwhile (each commit would make it stale at once).
BURST_GAP_S = 0.02
USAGE_KEEP_HALF_LIVES = 10  # usage older than this many half-lives weighs < 0.1%: dropped
_PG_ADMIT_LOCK = 0x706C6E7461646D  # advisory lock serialising admission across servers


@dataclass
class _Plan:
    """What the admit phase hands to the launch phase for one workload."""

    workload_id: str
    attempt: int
    spec: dict[str, Any]
    code: dict[str, Any] | None
    token: str
    max_runtime_s: float
    replicas: list[tuple[int, str, int, str, tuple[int, ...], Path]] = field(default_factory=list)
    addresses: list[ReplicaAddress] = field(default_factory=list)


# The lifecycle columns of a workload, enough for ``transition`` (plus its id).
_WROW = (
    Workload.id,
    Workload.state,
    Workload.reason,
    Workload.admitted_at,
    Workload.started_at,
    Workload.finished_at,
)


@dataclass
class Admitted:
    """Decisions applied in a transaction, to act on once it has committed."""

    plans: list[_Plan]
    to_stop: list[tuple[int, dict[str, Any]]]  # preempted replicas: (id, handle)
    more: bool  # the batch was cut: more admissions may be waiting


@dataclass(frozen=True)
class _KeptSnapshot:
    """A snapshot read while idle, with the commit counters noted before the read."""

    versions: tuple[int, ...]
    info: SnapshotInfo


@dataclass(frozen=True)
class _Cached:
    spec: dict[str, Any]
    code: dict[str, Any] | None
    demands: tuple[ReplicaDemand, ...]

    @classmethod
    def of(cls, spec: dict[str, Any], code: dict[str, Any] | None) -> _Cached:
        return cls(spec, code, replica_demands(spec))


@dataclass
class _Lifecycle:
    state: str
    reason: str
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


def _apply(
    s: Any,
    row: Any,
    target: State,
    reason: str,
    now: datetime,
    events: list[dict[str, Any]],
    values: dict[str, Any] | None = None,
    **data: Any,
) -> bool:
    """Transition the workload `row` (a Core row with the _WROW columns) to `target` with a
    Core UPDATE guarded by its current state, and queue the event in `events`.

    False (nothing written, no event) when the row is no longer in that state: another
    writer (a cancel on PostgreSQL, which does not take the admission lock) changed it
    since it was read. The caller must then drop what it planned for the workload."""
    w = _Lifecycle(row.state, row.reason, row.admitted_at, row.started_at, row.finished_at)
    t = transition(w, target, reason, now)
    done = s.connection().execute(
        update(Workload)
        .where(Workload.id == row.id, Workload.state == row.state)
        .values(state=w.state, reason=w.reason, admitted_at=w.admitted_at,
                started_at=w.started_at, finished_at=w.finished_at, **(values or {}))
    ).rowcount  # fmt: skip
    if done != 1:
        log.info("workload %s changed state concurrently; %s not applied", row.id, target.value)
        return False
    events.append({
        "workload_id": row.id, "type": t.type, "reason": t.reason, "time": now,
        "data": {"from_state": t.from_state.value, "to_state": t.to_state.value, **data},
    })  # fmt: skip
    return True


class ControlLoop:
    """Owns the executor; see the module docstring."""

    def __init__(
        self, db: Database, executor: Executor, cfg: ServerConfig, home: Path, url: str
    ) -> None:
        self.db = db
        self.executor = executor
        self.cfg = cfg
        self.home = home
        self.url = url
        self.nodes: tuple[NodeCapacity, ...] = tuple(executor.inventory())
        # Fixed for the life of the loop: built once, not per submit.
        self._capacity = tuple(
            NodeFree(n.name, n.address, n.cpu, n.memory_mib, tuple(range(n.gpu)))
            for n in self.nodes
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping: set[int] = set()  # replica ids this process asked to stop
        self._exit_notes: dict[int, str] = {}  # replica id -> how it ended (this cycle)
        self._waiting: dict[str, str] = {}  # last waiting reason written per workload
        self._specs: dict[str, _Cached] = {}  # pending workload -> its spec, code, demands
        # A replica's exit wakes the loop at once, for a cycle that looks at the replicas
        # that ended only (see cycle): not at every running one.
        self._exits = ExitWatcher(self._wake.set)
        self._pid_replica: dict[int, int] = {}  # watched supervisor pid -> replica id
        self._full = True  # the next cycle looks at every running replica
        self._full_lock = threading.Lock()
        self._last_full = -float("inf")  # when a full cycle last ended (monotonic)
        # Admitted at submit, with code to prepare: started by this thread (an
        # extraction or a checkout may take long; a request should not wait for it).
        self._to_launch: deque[Admitted] = deque()
        self._due: list[float] = []  # monotonic times at which a cycle must run (heap)
        self._due_lock = threading.Lock()  # request threads add deadlines too
        # Held while admitting (the loop's cycle or a submit's own admission): the
        # caches below are shared by both.
        self._admit_lock = threading.Lock()
        self._kept: _KeptSnapshot | None = None  # for admission at submit (submitting)
        self._pending_left = False  # the last admission round left workloads pending
        self._last_submit = -float("inf")  # when a submit last came (monotonic)
        # outcomes of admission at submit: admitted; left to the loop because the scheduler
        # said so (left), submissions came close together (burst), the loop was
        # admitting (busy) or the kept snapshot was not current (stale)
        self.on_submit: dict[str, int] = defaultdict(int)
        self._count_lock = threading.Lock()
        # (pending id, attempt) -> its scheduler value (see build_snapshot)
        self._pending_cache: dict[tuple[str, int], core.Workload] = {}
        self._usage: list[core.UsageRecord] | None = None  # fair-share history (memory)
        self._boundary: float | None = None  # next expansion/reservation start or end
        self.policy: core.SchedulerConfig = cfg.scheduler.policy()
        self.last_phases: dict[str, float] = {}  # the last cycle's phase durations (s)
        self.cycles = 0
        self.poll_errors = 0  # executor.poll calls that raised (replica taken as running)
        # Set by wake(workload): something was committed pending, so the next admission
        # need not first look whether anything waits (one read transaction saved).
        self._submitted = False

    # -- lifecycle of the loop itself ---------------------------------------------

    def capacity(self) -> tuple[NodeFree, ...]:
        """Every node at full capacity (to refuse gangs that could never start)."""
        return self._capacity

    def start(self) -> None:
        """Start the loop thread (call ``reconcile`` first)."""
        self._thread = threading.Thread(target=self._run, name="plinth-control-loop", daemon=True)
        self._thread.start()
        self._exits.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop thread. Replicas keep running; a restart re-adopts them."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._exits.close()

    def wake(self, workload: Workload | None = None) -> None:
        """Run a cycle now (after a submit, cancel, ...). A just-submitted `workload` is
        handed over so the cycle need not read its spec back from the database."""
        if workload is not None and workload.spec is not None:
            # A plain dict assignment: atomic under the GIL, read by the loop thread.
            self._specs[workload.id] = _Cached.of(workload.spec, workload.code)
            self._submitted = True
        with self._full_lock:
            self._full = True
        self._wake.set()

    def usage(self) -> tuple[core.UsageRecord, ...]:
        """The fair-share usage history the scheduler uses (for read-side views)."""
        return tuple(self._usage or ())

    def _due_in(self, delay_s: float) -> None:
        """Make sure a full cycle runs `delay_s` seconds from now (a retry's backoff ends,
        a deadline passes), even when the poll interval is longer."""
        when = time.monotonic() + max(delay_s, 0.0)
        with self._due_lock:
            earliest = not self._due or when < self._due[0]
            heapq.heappush(self._due, when)
        if earliest and threading.current_thread() is not self._thread:
            self._wake.set()  # the loop is waiting for a later time: let it look again

    def _next_wait(self) -> float:
        wait = self.cfg.scheduler.poll_interval
        with self._due_lock:
            if self._due:
                wait = min(wait, self._due[0] - time.monotonic())
        return max(wait, 0.0)

    def _take_due(self) -> bool:
        """Drop the due times that have come; True if there were any."""
        now = time.monotonic()
        came = False
        with self._due_lock:
            while self._due and self._due[0] <= now:
                heapq.heappop(self._due)
                came = True
        return came

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self._next_wait())
            self._wake.clear()  # before taking the flag: a later wake() is seen next time
            due = self._take_due()
            with self._full_lock:
                # Only replica exits woke us: look at those replicas alone. A wake(), a
                # due time, the poll tick, or no full look for a poll interval (steady
                # exits): look at every one (deadlines, stops, exits not watched).
                overdue = time.monotonic() - self._last_full >= self.cfg.scheduler.poll_interval
                full = self._full or not woken or due or overdue or not self._exits.enabled
                self._full = False
            if self._stop.is_set():
                break
            try:
                self.cycle(full)
                if full:
                    self._last_full = time.monotonic()
                # Read the next submit's snapshot ahead, unless submissions come in a
                # burst (no admission at submit then; each commit would make the
                # read stale at once).
                sparse = time.monotonic() - self._last_submit >= BURST_GAP_S
                if sparse:
                    self.keep_snapshot()
            except Exception:
                log.exception("control loop cycle failed")
                with self._full_lock:
                    self._full = True  # exits already taken from the watcher: look again
                self._stop.wait(min(1.0, self.cfg.scheduler.poll_interval))

    def cycle(self, full: bool = True) -> None:
        """One observe + admit round (public so tests can drive the loop synchronously).

        ``full=False``: observe only the replicas whose exits the watcher reported."""
        self.cycles += 1
        while self._to_launch:
            self.launch_admitted(self._to_launch.popleft())
        # Admit first: a submit's wake-up should not wait behind bookkeeping of exits.
        while self.admit_and_launch():
            pass
        ended = [self._pid_replica.pop(pid, None) for pid in self._exits.take_ended()]
        only = None if full else {rid for rid in ended if rid is not None}
        if (only is None or only) and self.observe(only):
            while self.admit_and_launch():  # exits may have freed capacity
                pass

    # -- observe ----------------------------------------------------------------------

    def observe(self, only: set[int] | None = None) -> bool:
        """Poll running replicas (those with ids in `only`, or all), apply exits and
        deadlines, stop what must stop.

        Returns True when something changed (capacity may have been freed)."""
        now = utcnow()
        with self.db.read() as s:
            q = (
                select(
                    Replica.id,
                    Replica.workload_id,
                    Replica.attempt,
                    Replica.handle,
                    Workload.state,
                    Workload.attempt,
                    Workload.deadline_at,
                    Workload.preempted_at,
                )
                .join(Workload, Replica.workload_id == Workload.id)
                .where(Replica.state == "running")
            )
            if only is not None:
                q = q.where(Replica.id.in_(only))
            rows = s.execute(q).all()
        exits: dict[int, tuple[int, str | None]] = {}
        must_stop: list[int] = []
        timed_out: set[str] = set()
        for rid, wid, r_attempt, handle, w_state, w_attempt, deadline, preempted in rows:
            self._watch(handle, rid)  # re-adopted replicas too (no-op when watched)
            code = self._poll(handle)
            if code is not None:
                self._pid_replica.pop((handle or {}).get("supervisor_pid"), None)
                why = None
                if code != 0:
                    why = self._exit_reason(handle)
                exits[rid] = (code, why)
                if why == "timeout":
                    timed_out.add(wid)
                continue
            # A preempted workload's replicas too: after a restart the stop must be
            # issued again (the old process's SIGKILL timer is gone).
            over = w_state in FINAL or w_state == State.PENDING or r_attempt != w_attempt
            if over or preempted is not None:
                if rid not in self._stopping:
                    must_stop.append(rid)
            elif w_state == State.RUNNING and deadline is not None and now >= deadline:
                timed_out.add(wid)
        if not exits and not must_stop and not timed_out:
            return False
        to_stop: list[tuple[int, dict[str, Any]]] = []
        with self.db.session() as s:
            affected: dict[str, list[Replica]] = defaultdict(list)
            usage: list[dict[str, Any]] = []
            for rid, (code, why) in exits.items():
                r = s.get(Replica, rid)
                assert r is not None
                r.exit_code = code
                r.finished_at = now
                if r.started_at is not None:
                    usage.append({"workload_id": r.workload_id, "start": r.started_at,
                                  "end": now, "resources": dict(r.resources)})  # fmt: skip
                asked = r.stop_requested or rid in self._stopping or why == "timeout"
                what = describe_exit(code)
                if asked:
                    r.state = "stopped"  # ended because Plinth asked, whatever its status
                elif code == 0:
                    r.state = "succeeded"
                elif code == EXIT_LOST:
                    r.state = "lost"
                else:
                    # Includes a supervisor stopped by a signal Plinth did not send (kill,
                    # systemd stop): a failure, so retries apply and the job ends.
                    r.state = "failed"
                    if why == "stopped":
                        what += " (stopped by a signal Plinth did not send)"
                self._stopping.discard(rid)
                self._exit_notes[rid] = what
                ev.record(
                    s, r.workload_id, "replica_exited",
                    f"replica {r.role}-{r.replica} (attempt {r.attempt}) {what}",
                    now, role=r.role, replica=r.replica, attempt=r.attempt, exit_code=code,
                )  # fmt: skip
                affected[r.workload_id].append(r)
            self._record_usage(s, usage)
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
                    self._decide_after_exits(s, w, now)
            if must_stop or timed_out or affected:
                # Everything of a workload that is over, or of an attempt that is over.
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
                for r in s.scalars(q):
                    if r.id in exits or r.id in self._stopping:
                        continue
                    r.stop_requested = True
                    to_stop.append((r.id, dict(r.handle or {})))
        self._exit_notes.clear()
        for rid, handle in to_stop:
            try:
                self.executor.stop(handle, self.cfg.jobs.grace)
            except Exception:
                log.exception("stopping replica %s failed", rid)
            self._stopping.add(rid)
        return True

    def _record_usage(self, s: Any, usage: list[dict[str, Any]]) -> None:
        """One usage record per ended replica attempt (fair share), in the DB and memory."""
        if not usage:
            return
        wids = {u["workload_id"] for u in usage}
        groups = {
            wid: (gid, name)
            for wid, gid, name in s.connection().execute(
                select(Workload.id, Group.id, Group.name)
                .join(Group, Workload.group_id == Group.id)
                .where(Workload.id.in_(wids))
            )
        }
        rows = []
        for u in usage:
            gid, name = groups[u["workload_id"]]
            rows.append({"group_id": gid, "start": u["start"], "end": u["end"],
                         "resources": u["resources"]})  # fmt: skip
            if self._usage is not None:
                self._usage.append(core.UsageRecord(
                    name, epoch(u["start"]), epoch(u["end"]), resources(u["resources"])
                ))  # fmt: skip
        s.connection().execute(insert(UsageRecord), rows)  # Core: no ORM bulk-insert cost

    def _decide_after_exits(self, s: Any, w: Workload, now: Any) -> None:
        """A replica of running workload `w` ended: succeeded, retry, failed, or (when it
        was preempted and nothing of it runs any more) back to pending?"""
        current = list(
            s.scalars(
                select(Replica).where(Replica.workload_id == w.id, Replica.attempt == w.attempt)
            )
        )
        if w.preempted_at is not None:
            if any(r.state in LIVE_REPLICA_STATES for r in current):
                return  # the rest of the gang is still stopping; it holds its resources
            waited = now - w.queued_at
            t = transition(
                w, State.PENDING,
                f"preemption done: all {len(current)} replica(s) stopped; back in the queue "
                f"with its original queue time {w.queued_at.isoformat(timespec='seconds')} "
                f"(waiting {waited.total_seconds():.0f}s in all), no retry used",
                now, event_type="requeued",
            )  # fmt: skip
            w.attempt += 1
            w.preempted_at = None
            w.deadline_at = None
            ev.record_transition(s, w.id, t, now)
            return
        failed = [r for r in current if r.state in ("failed", "lost")]
        if not failed and not any(r.state in LIVE_REPLICA_STATES for r in current):
            # Nothing of the attempt runs and not all succeeded (a replica ended as
            # `stopped` though the workload was neither cancelled nor preempted): the
            # attempt is over and did not succeed; waiting would last until max_runtime.
            failed = [r for r in current if r.state != "succeeded"]
        if failed:
            f = failed[0]
            how = self._exit_notes.pop(f.id, None) or describe_exit(f.exit_code or 0)
            if f.state == "stopped":
                how = f"was stopped ({how}) without Plinth asking"
            what = f"replica {f.role}-{f.replica} {how}"
            w.failures += 1
            if w.failures <= w.retries:
                delay = self.cfg.jobs.retry_backoff.delay_s(w.failures)
                t = transition(
                    w, State.PENDING,
                    f"{what}; retry {w.failures}/{w.retries} in {delay:g}s",
                    now, event_type="retrying",
                )  # fmt: skip
                w.attempt += 1
                w.not_before = now + timedelta(seconds=delay)
                self._due_in(delay)
                w.deadline_at = None
            else:
                tail = "no retries left" if w.retries else "no retries requested"
                if w.retries:
                    tail = f"failed {w.failures} attempts; {tail}"
                t = transition(w, State.FAILED, f"{what}; {tail}", now)
            ev.record_transition(s, w.id, t, now)
        elif current and all(r.state == "succeeded" for r in current):
            t = transition(
                w, State.SUCCEEDED, f"all {len(current)} replica(s) exited with status 0", now
            )
            ev.record_transition(s, w.id, t, now)

    def _watch(self, handle: dict[str, Any] | None, rid: int) -> None:
        pid = (handle or {}).get("supervisor_pid")
        if isinstance(pid, int):
            self._pid_replica[pid] = rid
            self._exits.watch(pid)

    def _poll(self, handle: dict[str, Any] | None) -> int | None:
        """The replica's exit code, or None while it runs.

        A failing poll (EMFILE, a transient I/O error) says nothing about the replica:
        it is taken as still running, logged and counted in ``poll_errors``. Only the
        executor itself declares a replica lost (``EXIT_LOST``); guessing "lost" here
        would let a retry start a second copy of a replica that still runs."""
        if not handle:
            return EXIT_LOST
        try:
            return self.executor.poll(handle)
        except Exception:
            self.poll_errors += 1
            log.exception("poll failed for %s; taken as still running", handle)
            return None

    def _exit_reason(self, handle: dict[str, Any]) -> str | None:
        fn = getattr(self.executor, "exit_reason", None)
        if fn is None:
            return None
        try:
            return fn(handle)
        except Exception:  # noqa: BLE001 - the reason is optional detail
            return None

    # -- admit and launch ----------------------------------------------------------------

    def admit_and_launch(self) -> bool:
        """Run one quota-scheduler cycle, apply it, launch what it admitted.

        True when more admissions may be waiting (the batch was cut). The snapshot is
        read and the decisions applied in ONE write transaction that holds the write lock
        (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory transaction lock), so nothing
        can change between what the scheduler saw and what is written: concurrent
        submissions never over-admit. Preempted workloads' replicas get SIGTERM after
        the commit, with ``scheduler.reclaim_grace`` before SIGKILL.
        """
        submitted, self._submitted = self._submitted, False
        if not submitted:
            with self.db.read() as s:
                # The common idle case (nothing waiting) costs one indexed lookup, not a
                # whole snapshot, a write lock, nor the admission lock (a submit
                # finds it free).
                if not self._note_pending(self._anything_pending(s)):
                    return False
        with self._admit_lock:
            done = self._admit()
        if done is None:
            return False
        self.launch_admitted(done)
        return done.more

    def _admit(self) -> Admitted | None:
        now = utcnow()
        with self.db.session() as s:
            if not self.db.is_sqlite:
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_ADMIT_LOCK})
            info = build_snapshot(s, self.nodes, now, usage=self._usage_history(s, now),
                                  cache=self._pending_cache,
                                  heads_per_group=self.policy.queue_heads_per_group)  # fmt: skip
            self._plan_boundary(info.snapshot)
            if not self._note_pending(bool(info.snapshot.pending)):
                return None
            decisions = core.schedule(info.snapshot, self.policy)
            self.last_phases = decisions.phases
            self._note_pending(len(decisions.admissions) < len(info.snapshot.pending))
            self._write_waiting(
                s, {k: v for k, v in decisions.reasons.items() if k in info.pending}
            )
            return self._apply_decisions(s, info, decisions, now)

    @contextmanager
    def submitting(self) -> Iterator[Callable[[Session, Workload, str], Admitted | None] | None]:
        """Around a submit's write transaction: yields ``admit(s, w, user)`` that admits
        job `w`, just inserted in transaction `s` by `user`, right there -- or None when
        submissions come in a burst (less than ``BURST_GAP_S`` apart: the loop's batches
        share one snapshot among many jobs) or the loop is admitting.

        Open it before the transaction and close it after: the admission lock is held
        until the transaction has committed and its counters have moved, so that no
        other admission can use the kept snapshot meanwhile. ``admit`` returns None
        (the loop then decides as usual) unless the kept snapshot is current, nothing
        else is pending and the scheduler admits `w` alone without preempting anything
        (see the module docstring). Pass what it returns to ``launch_admitted`` once
        the transaction has committed."""
        if not self.cfg.scheduler.admit_on_submit:
            yield None
            return
        now = time.monotonic()
        previous, self._last_submit = self._last_submit, now
        if now - previous < BURST_GAP_S:
            self._count("burst")
            yield None
            return
        # Never wait: a submit is not to queue behind the loop's cycle.
        if not self._admit_lock.acquire(blocking=False):
            self._count("busy")
            yield None
            return
        try:
            yield self._admit_at_submit
        finally:
            self._admit_lock.release()

    def _admit_at_submit(self, s: Session, w: Workload, user: str) -> Admitted | None:
        try:
            if not self.db.is_sqlite:
                # Serialises with the loop's and other servers' admissions (first: the
                # counters are only looked at under it).
                if not s.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                {"k": _PG_ADMIT_LOCK}):  # fmt: skip
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
            # A savepoint: should admitting fail, the submission itself still stands.
            with s.begin_nested():
                done = self._admit_one(s, w, user, kept.info)
            self._count("admitted" if done is not None else "left")
            return done
        except Exception:
            log.exception("admission at submit of %s failed; left to the control loop", w.id)
            return None

    def _count(self, outcome: str) -> None:
        with self._count_lock:  # request threads count concurrently
            self.on_submit[outcome] += 1

    def snapshot_is_current(self) -> bool:
        """Whether the kept snapshot is what a read now would give, with nothing pending
        in it (admission at submit can use it)."""
        return self._current_kept() is not None

    def _current_kept(self) -> _KeptSnapshot | None:
        kept = self._kept  # one read: the loop may replace it meanwhile
        if (
            kept is None
            or kept.info.snapshot.pending
            or self._usage is None
            or self.db.versions.get(SNAPSHOT_TABLES) != kept.versions
        ):
            return None
        return kept

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
            usage_history=tuple(self._usage),
        )
        decisions = core.schedule(snapshot, self.policy)
        if decisions.preemptions or [a.workload_id for a in decisions.admissions] != [w.id]:
            return None
        info = dataclasses.replace(base, snapshot=snapshot, pending={w.id: w.attempt})
        self._specs[w.id] = _Cached.of(w.spec, w.code)
        self.last_phases = decisions.phases
        return self._apply_decisions(s, info, decisions, now)

    def keep_snapshot(self) -> None:
        """Read a snapshot ahead for admission at submit, unless the kept one is current."""
        if not self.cfg.scheduler.admit_on_submit:
            return
        if self._pending_left:
            # Useless at submit (no job jumps the queue): not worth a read.
            self._kept = None
            return
        versions = self.db.versions.get(SNAPSHOT_TABLES)  # before the read: see Database
        if self._kept is not None and self._kept.versions == versions:
            return
        # No admission lock: only this (the loop's) thread reads ahead or loads the
        # usage, and the kept snapshot is replaced in one assignment.
        with self.db.read() as s:
            # Pending work a snapshot leaves out (a retry in its backoff) counts too: a
            # submit must not go ahead of it once its backoff ends.
            if self._anything_pending(s):
                self._kept = None
                return
            now = utcnow()
            if self._usage is None:
                self._usage = self._read_usage(s, now)
            info = build_snapshot(s, self.nodes, now)
        self._kept = _KeptSnapshot(versions, info)

    @staticmethod
    def _anything_pending(s: Any) -> bool:
        """One indexed lookup: is any workload pending?"""
        return (
            s.scalar(select(Workload.id).where(Workload.state == State.PENDING.value).limit(1))
            is not None
        )

    def _note_pending(self, left: bool) -> bool:
        self._pending_left = left
        return left

    def start_admitted(self, done: Admitted) -> None:
        """After a submit's transaction admitted its job (``submitting``) and committed:
        start it in this request thread when it has no code to prepare, else hand it to
        the loop's thread. Either way the loop reads its snapshot ahead again once the
        burst gap has passed."""
        if any(plan.code is not None for plan in done.plans):
            self._to_launch.append(done)
            self.wake()
        else:
            try:
                self.launch_admitted(done)
            except Exception:  # the job is admitted and committed: never a 500 for it
                log.exception("starting %s failed", [p.workload_id for p in done.plans])
                self.wake()
        self._due_in(BURST_GAP_S)

    def launch_admitted(self, done: Admitted) -> None:
        """After the commit: stop what was preempted, start what was admitted."""
        grace = self.policy.reclaim_grace_s
        for rid, handle in done.to_stop:
            try:
                self.executor.stop(handle, grace)
            except Exception:
                log.exception("stopping preempted replica %s failed", rid)
            self._stopping.add(rid)
        if done.to_stop:
            self._due_in(grace + self.cfg.scheduler.poll_interval)
        self._launch_all(done.plans)

    def _apply_decisions(
        self, s: Any, info: SnapshotInfo, decisions: core.Decisions, now: datetime
    ) -> Admitted | None:
        """Write one cycle's preemptions and admissions in transaction `s`."""
        plans: list[_Plan] = []
        events: list[dict[str, Any]] = []
        apply_holds(s, info, decisions)  # reclaim holds (plinth.scheduler.holds)
        to_stop = self._apply_preemptions(s, info, decisions.preemptions, now, events)
        admissions = _checked(info, decisions.admissions)[:ADMIT_BATCH]
        more = len(decisions.admissions) > ADMIT_BATCH
        if not admissions and not events:
            return None
        self._cache_specs(s, [a.workload_id for a in admissions])
        rows = {
            r.id: r
            for r in s.connection().execute(
                select(*_WROW, Workload.user_id, Workload.attempt, Workload.max_runtime_s).where(
                    Workload.id.in_([a.workload_id for a in admissions])
                )
            )
        }
        free_gpus = {
            n.name: [g for g in range(n.gpu) if g not in info.busy_gpus[n.name]] for n in self.nodes
        }
        address = {n.name: n.address for n in self.nodes}
        tokens: list[dict[str, Any]] = []
        for a in admissions:
            r = rows[a.workload_id]
            if r.state != State.PENDING.value:
                continue  # cancelled since the snapshot (a cancel takes no admission lock)
            nodes = sorted({n for ns in a.placement.values() for n in ns})
            how = ""
            if a.borrows:
                how += " (borrowing idle quota of other groups; may be reclaimed)"
            if a.backfill:
                how += " (backfill: ends before the top blocked workload can start)"
            if a.reservation:
                how += f" (in reservation {a.reservation})"
            if not _apply(s, r, State.ADMITTED, f"admitted on {', '.join(nodes)}{how}",
                          now, events, attempt=r.attempt, borrows=a.borrows,
                          backfill=a.backfill):  # fmt: skip
                continue  # cancelled meanwhile: no replicas, no token, no launch
            self._waiting.pop(r.id, None)
            cached = self._specs.pop(r.id)
            token = new_token()
            tokens.append({"token_hash": hash_token(token), "user_id": r.user_id,
                           "workload_id": r.id, "created_at": now})  # fmt: skip
            plan = _Plan(r.id, r.attempt, cached.spec, cached.code, token, r.max_runtime_s)
            demands = {(d.role, d.replica): d for d in cached.demands}
            for role, role_nodes in a.placement.items():
                for i, node in enumerate(role_nodes):
                    d = demands[(role, i)]
                    gpus, free_gpus[node] = (
                        tuple(free_gpus[node][: d.gpu]),
                        free_gpus[node][d.gpu :],
                    )
                    port = self.executor.allocate_port(node)
                    lp = log_path(self.home, r.id, role, i, r.attempt)
                    rid = s.connection().execute(
                        insert(Replica)
                        .values(
                            workload_id=r.id, role=role, replica=i, attempt=r.attempt,
                            state="launching", node=node, host=address[node], port=port,
                            gpus=list(gpus),
                            resources={"cpu": d.cpu, "memory": d.memory, "gpu": d.gpu},
                            handle=None, log_path=str(lp), stop_requested=False,
                        )
                        .returning(Replica.id)
                    ).scalar_one()  # fmt: skip
                    plan.replicas.append((rid, role, i, node, gpus, lp))
                    plan.addresses.append(ReplicaAddress(role, i, address[node], port))
            plans.append(plan)
        if tokens:
            s.connection().execute(insert(Token), tokens)
        if events:
            s.connection().execute(insert(Event), events)
        return Admitted(plans, to_stop, more)

    def _apply_preemptions(
        self,
        s: Any,
        info: SnapshotInfo,
        preemptions: Sequence[core.Preemption],
        now: datetime,
        events: list[dict[str, Any]],
    ) -> list[tuple[int, dict[str, Any]]]:
        """Mark each preempted workload (it keeps its resources until its replicas exit)
        and return the replicas to SIGTERM once the transaction commits."""
        grace = self.policy.reclaim_grace_s
        out: list[tuple[int, dict[str, Any]]] = []
        for p in preemptions:
            wid = info.running.get(p.workload_id)
            if wid is None or wid != p.workload_id:
                continue  # an old attempt already stopping: nothing more to do
            why = (
                f"preempted: {p.reason}; SIGTERM now, SIGKILL after {grace:g}s, then back "
                "to the queue with its original queue time (no retry used)"
            )
            done = s.connection().execute(
                update(Workload)
                .where(Workload.id == wid, Workload.state == State.RUNNING.value,
                       Workload.preempted_at.is_(None))
                .values(preempted_at=now, preemptions=Workload.preemptions + 1, reason=why)
            ).rowcount  # fmt: skip
            if not done:
                continue
            events.append({
                "workload_id": wid, "type": "preempted", "reason": why, "time": now,
                "data": {"for_workload": p.for_workload, "grace_s": grace},
            })  # fmt: skip
            rows = s.connection().execute(
                select(Replica.id, Replica.handle)
                .join(Workload, Replica.workload_id == Workload.id)
                .where(Replica.workload_id == wid, Replica.attempt == Workload.attempt,
                       Replica.state == "running")
            ).all()  # fmt: skip
            if rows:
                s.connection().execute(
                    update(Replica)
                    .where(Replica.id.in_([r.id for r in rows]))
                    .values(stop_requested=True)
                )
            out.extend((r.id, dict(r.handle or {})) for r in rows)
        return out

    def _usage_history(self, s: Any, now: datetime) -> tuple[core.UsageRecord, ...]:
        """Usage records for fair share, kept in memory (this thread appends what it
        writes); read once, and records older than ``USAGE_KEEP_HALF_LIVES`` half-lives
        are dropped from memory and, now and then, from the database."""
        cutoff = self._usage_cutoff(now)
        if self._usage is None:
            self._usage = self._read_usage(s, now)
        if self.cycles % 1000 == 1:
            t_cut = epoch(cutoff)
            self._usage = [u for u in self._usage if u.end > t_cut]
            s.connection().execute(delete(UsageRecord).where(UsageRecord.end <= cutoff))
        return tuple(self._usage)

    def _usage_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=USAGE_KEEP_HALF_LIVES * self.policy.fair_share_half_life_s)

    def _read_usage(self, s: Any, now: datetime) -> list[core.UsageRecord]:
        rows = s.connection().execute(
            select(Group.name, UsageRecord.start, UsageRecord.end, UsageRecord.resources)
            .join(Group, UsageRecord.group_id == Group.id)
            .where(UsageRecord.end > self._usage_cutoff(now))
        )
        return [core.UsageRecord(g, epoch(a), epoch(b), resources(res)) for g, a, b, res in rows]

    def _plan_boundary(self, snapshot: core.Snapshot) -> None:
        """Make sure a cycle runs when the next expansion or reservation starts or ends."""
        t = next_boundary(snapshot)
        if t is not None and t != self._boundary:
            self._boundary = t
            self._due_in(t - snapshot.now + 0.01)

    def _cache_specs(self, s: Any, ids: Sequence[str]) -> None:
        """Specs, code records and demands of workloads about to start (a submit hands
        them over with ``wake(workload=...)``; others are read here)."""
        missing = [i for i in ids if i not in self._specs]
        for i in range(0, len(missing), 500):
            for wid, spec, code in s.connection().execute(
                select(Workload.id, Workload.spec, Workload.code).where(
                    Workload.id.in_(missing[i : i + 500])
                )
            ):
                self._specs[wid] = _Cached.of(spec, code)
        if len(self._specs) > 5000:
            keep = set(ids)
            self._specs = {k: v for k, v in self._specs.items() if k in keep}

    def _write_waiting(self, s: Any, waiting: dict[str, str]) -> None:
        """Record why pending workloads wait, only when the reason changed (few writes)."""
        for wid, why in list(waiting.items())[:100]:
            why = f"waiting: {why}"
            if self._waiting.get(wid) != why:
                s.connection().execute(
                    update(Workload)
                    .where(Workload.id == wid, Workload.state == State.PENDING.value)
                    .values(reason=why)
                )
                self._waiting[wid] = why

    def _start(self, plan: _Plan) -> tuple[dict[int, dict[str, Any]], str | None, datetime]:
        """Prepare the code and start every replica of one plan: (handles, error, when)."""
        handles: dict[int, dict[str, Any]] = {}
        try:
            workdir = prepare_code(
                self.home, plan.workload_id, plan.code, archive_limits(self.cfg.uploads)
            )
        except CodeError as e:
            return handles, str(e), utcnow()
        params = plan.spec.get("params") or {}
        for rid, role, replica, node, gpus, lp in plan.replicas:
            env = replica_env(
                workload_id=plan.workload_id, role=role, replica=replica,
                attempt=plan.attempt, addresses=plan.addresses, params=params,
                url=self.url, token=plan.token,
                role_env=plan.spec["roles"][role].get("env") or {},
            )  # fmt: skip
            spec = ReplicaLaunch(
                workload_id=plan.workload_id, role=role, replica=replica,
                attempt=plan.attempt, command=list(plan.spec["roles"][role]["command"]),
                env=env, workdir=workdir, log_path=lp, node=node, gpus=tuple(gpus),
                timeout_s=plan.max_runtime_s, grace_s=self.cfg.jobs.grace,
            )  # fmt: skip
            try:
                handles[rid] = self.executor.launch(spec)
            except Exception as e:  # noqa: BLE001 - any launch failure fails the workload
                return handles, f"could not start replica {role}-{replica}: {e}", utcnow()
        return handles, None, utcnow()

    def _launch_all(self, plans: list[_Plan]) -> None:
        """Start each plan and record its handles and ``running`` in a transaction of its
        own right after: at any moment at most one workload has started replicas whose
        handles are not recorded (a crash then leaves them ``launching``; ``reconcile``
        finds and stops them through ``Executor.find_launched``)."""
        trouble = False
        for plan in plans:
            handles, error, when = self._start(plan)
            try:
                trouble |= self._record_launch(plan, handles, error, when)
            finally:
                for rid, h in handles.items():
                    self._watch(h, rid)
        if trouble:
            self.wake()

    def _record_launch(
        self, plan: _Plan, handles: dict[int, dict[str, Any]], error: str | None, when: datetime
    ) -> bool:
        """One transaction: the plan's handles, replica states and the workload's state.
        True when a further cycle is needed (failed, or cancelled meanwhile)."""
        trouble = False
        with self.db.session() as s:
            r = s.connection().execute(select(*_WROW).where(Workload.id == plan.workload_id)).one()
            events: list[dict[str, Any]] = []
            for rid, *_ in plan.replicas:
                if rid in handles:
                    values = {"handle": handles[rid], "state": "running", "started_at": when}
                else:
                    values = {"state": "failed", "finished_at": when}
                s.connection().execute(update(Replica).where(Replica.id == rid).values(**values))
            if r.state != State.ADMITTED:
                trouble = True  # cancelled meanwhile: observe() stops what was started
            elif error is not None:
                trouble = True
                _apply(s, r, State.FAILED, error, when, events)
            else:
                nodes = sorted({x[3] for x in plan.replicas})
                if _apply(
                    s, r, State.RUNNING,
                    f"{len(handles)} replica(s) started on {', '.join(nodes)} "
                    f"(attempt {plan.attempt})",
                    when, events,
                    values={"deadline_at": when + timedelta(seconds=plan.max_runtime_s)},
                    attempt=plan.attempt,
                ):  # fmt: skip
                    self._due_in(plan.max_runtime_s)
                else:
                    trouble = True  # cancelled meanwhile: observe() stops what was started
            if events:
                s.connection().execute(insert(Event), events)
        return trouble
