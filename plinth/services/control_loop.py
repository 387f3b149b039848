"""The control loop: admit pending workloads, launch their replicas, watch them.

One thread runs ``cycle()`` whenever it is woken (a submit, a cancel: ``wake()``) and
at least every ``scheduler.poll_interval`` seconds (to poll replicas and deadlines).
A cycle has two phases:

observe
    poll every running replica; record exits; decide each affected workload
    (succeeded / retry with backoff / failed / timed_out); stop the replicas that
    must stop (the workload finished, was cancelled, or its attempt is over).
    One read, and one write transaction only when something changed.
admit
    build a ``Snapshot`` (free capacity = nodes minus live replicas; pending
    workloads in queue order), ``admission.decide`` it, and apply the decisions in
    ONE transaction (state ``admitted``, replica rows with node, port and log path,
    a workload-scoped token). Then per admitted workload: prepare its code, one
    ``executor.launch`` per replica, and one transaction recording the handles and
    the state ``running``.

Writing the replica rows before launching means a crash between the two leaves
rows in state ``launching``, which ``reconcile`` at the next start resolves.
The executor is only ever called from this thread (and ``reconcile`` before it).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, or_, select, update

from plinth.config import ServerConfig
from plinth.executors.base import EXIT_LOST, Executor, NodeCapacity, ReplicaLaunch, describe_exit
from plinth.services import events as ev
from plinth.services.admission import (
    NodeFree,
    PendingWorkload,
    ReplicaDemand,
    Snapshot,
    decide,
)
from plinth.services.auth import hash_token, new_token
from plinth.services.exit_watcher import ExitWatcher
from plinth.services.files import archive_limits
from plinth.services.jobs import replica_demands
from plinth.services.lifecycle import FINAL, State, transition
from plinth.services.replica_env import ReplicaAddress, replica_env
from plinth.services.workdirs import CodeError, log_path, prepare_code
from plinth.store.db import Database
from plinth.store.models import Event, Replica, Token, Workload, utcnow

__all__ = ["LIVE_REPLICA_STATES", "ControlLoop"]

log = logging.getLogger("plinth.control_loop")

LIVE_REPLICA_STATES = ("launching", "running")
ADMIT_SCAN = 1000  # pending workloads looked at per cycle (queue head)
ADMIT_BATCH = 32  # workloads admitted per transaction; more are taken in the next round


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


@dataclass(frozen=True)
class _Cached:
    spec: dict[str, Any]
    code: dict[str, Any] | None
    demands: tuple[ReplicaDemand, ...]


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
) -> None:
    """Transition the workload `row` (a Core row with the _WROW columns) to `target` with a
    Core UPDATE guarded by its current state, and queue the event in `events`."""
    w = _Lifecycle(row.state, row.reason, row.admitted_at, row.started_at, row.finished_at)
    t = transition(w, target, reason, now)
    s.connection().execute(
        update(Workload)
        .where(Workload.id == row.id, Workload.state == row.state)
        .values(state=w.state, reason=w.reason, admitted_at=w.admitted_at,
                started_at=w.started_at, finished_at=w.finished_at, **(values or {}))
    )  # fmt: skip
    events.append({
        "workload_id": row.id, "type": t.type, "reason": t.reason, "time": now,
        "data": {"from_state": t.from_state.value, "to_state": t.to_state.value, **data},
    })  # fmt: skip


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
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping: set[int] = set()  # replica ids this process asked to stop
        self._waiting: dict[str, str] = {}  # last waiting reason written per workload
        self._specs: dict[str, _Cached] = {}  # pending workload -> its spec, code, demands
        self._exits = ExitWatcher(self.wake)  # a replica's exit wakes the loop at once
        self._due: list[float] = []  # monotonic times at which a cycle must run (heap)
        self.cycles = 0

    # -- lifecycle of the loop itself ---------------------------------------------

    def capacity(self) -> tuple[NodeFree, ...]:
        """Every node at full capacity (to refuse gangs that could never start)."""
        return tuple(
            NodeFree(n.name, n.address, n.cpu, n.memory_mib, tuple(range(n.gpu)))
            for n in self.nodes
        )

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
            self._specs[workload.id] = _Cached(
                workload.spec, workload.code, replica_demands(workload.spec)
            )
        self._wake.set()

    def _due_in(self, delay_s: float) -> None:
        """Make sure a cycle runs `delay_s` seconds from now (a retry's backoff ends, a
        deadline passes), even when the poll interval is longer."""
        heapq.heappush(self._due, time.monotonic() + max(delay_s, 0.0))

    def _next_wait(self) -> float:
        now = time.monotonic()
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)
        wait = self.cfg.scheduler.poll_interval
        if self._due:
            wait = min(wait, self._due[0] - now)
        return max(wait, 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_wait())
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.cycle()
            except Exception:
                log.exception("control loop cycle failed")
                self._stop.wait(min(1.0, self.cfg.scheduler.poll_interval))

    def cycle(self) -> None:
        """One observe + admit round (public so tests can drive the loop synchronously)."""
        self.cycles += 1
        # Admit first: a submit's wake-up should not wait behind bookkeeping of exits.
        while self.admit_and_launch():
            pass
        if self.observe():
            while self.admit_and_launch():  # exits may have freed capacity
                pass

    # -- observe ----------------------------------------------------------------------

    def observe(self) -> bool:
        """Poll running replicas, apply exits and deadlines, stop what must stop.

        Returns True when something changed (capacity may have been freed)."""
        now = utcnow()
        with self.db.read() as s:
            rows = s.execute(
                select(
                    Replica.id,
                    Replica.workload_id,
                    Replica.attempt,
                    Replica.handle,
                    Workload.state,
                    Workload.attempt,
                    Workload.deadline_at,
                )
                .join(Workload, Replica.workload_id == Workload.id)
                .where(Replica.state == "running")
            ).all()
        exits: dict[int, tuple[int, str | None]] = {}
        must_stop: list[int] = []
        timed_out: set[str] = set()
        for rid, wid, r_attempt, handle, w_state, w_attempt, deadline in rows:
            self._watch(handle)  # re-adopted replicas too (no-op when already watched)
            code = self._poll(handle)
            if code is not None:
                why = None
                if code != 0:
                    why = self._exit_reason(handle)
                exits[rid] = (code, why)
                if why == "timeout":
                    timed_out.add(wid)
                continue
            if w_state in FINAL or w_state == State.PENDING or r_attempt != w_attempt:
                if rid not in self._stopping:
                    must_stop.append(rid)
            elif w_state == State.RUNNING and deadline is not None and now >= deadline:
                timed_out.add(wid)
        if not exits and not must_stop and not timed_out:
            return False
        to_stop: list[tuple[int, dict[str, Any]]] = []
        with self.db.session() as s:
            affected: dict[str, list[Replica]] = defaultdict(list)
            for rid, (code, why) in exits.items():
                r = s.get(Replica, rid)
                assert r is not None
                r.exit_code = code
                r.finished_at = now
                if r.stop_requested or rid in self._stopping or why in ("stopped", "timeout"):
                    r.state = "stopped"  # ended because Plinth asked, whatever its status
                elif code == 0:
                    r.state = "succeeded"
                elif code == EXIT_LOST:
                    r.state = "lost"
                else:
                    r.state = "failed"
                self._stopping.discard(rid)
                ev.record(
                    s, r.workload_id, "replica_exited",
                    f"replica {r.role}-{r.replica} (attempt {r.attempt}) {describe_exit(code)}",
                    now, role=r.role, replica=r.replica, attempt=r.attempt, exit_code=code,
                )  # fmt: skip
                affected[r.workload_id].append(r)
            for wid in set(affected) | timed_out:
                w = s.get(Workload, wid)
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
                        ),
                    )
                )
                for r in s.scalars(q):
                    if r.id in exits or r.id in self._stopping:
                        continue
                    r.stop_requested = True
                    to_stop.append((r.id, dict(r.handle or {})))
        for rid, handle in to_stop:
            try:
                self.executor.stop(handle, self.cfg.jobs.grace)
            except Exception:
                log.exception("stopping replica %s failed", rid)
            self._stopping.add(rid)
        return True

    def _decide_after_exits(self, s: Any, w: Workload, now: Any) -> None:
        """A replica of running workload `w` ended: succeeded, retry, or failed?"""
        current = list(
            s.scalars(
                select(Replica).where(Replica.workload_id == w.id, Replica.attempt == w.attempt)
            )
        )
        failed = [r for r in current if r.state in ("failed", "lost")]
        if failed:
            f = failed[0]
            what = f"replica {f.role}-{f.replica} {describe_exit(f.exit_code or 0)}"
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

    def _watch(self, handle: dict[str, Any] | None) -> None:
        pid = (handle or {}).get("supervisor_pid")
        if isinstance(pid, int):
            self._exits.watch(pid)

    def _poll(self, handle: dict[str, Any] | None) -> int | None:
        if not handle:
            return EXIT_LOST
        try:
            return self.executor.poll(handle)
        except Exception:
            log.exception("poll failed for %s", handle)
            return EXIT_LOST

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
        """Admit what fits and launch it; True when more admissions may be waiting.

        This is the submit-to-running path, so it uses Core statements (no ORM unit of
        work): one transaction before the launches, one after them for the whole batch.
        """
        now = utcnow()
        plans: list[_Plan] = []
        with self.db.session() as s:
            pending = (
                s.connection()
                .execute(
                    select(*_WROW, Workload.user_id, Workload.attempt, Workload.max_runtime_s)
                    .where(
                        Workload.state == State.PENDING.value,
                        or_(Workload.not_before.is_(None), Workload.not_before <= now),
                    )
                    .order_by(Workload.queued_at, Workload.id)
                    .limit(ADMIT_SCAN)
                )
                .all()
            )
            if not pending:
                return False
            pending_ids = [r.id for r in pending]
            self._cache_specs(s, pending_ids)
            used = (
                s.connection()
                .execute(
                    select(Replica.node, Replica.resources, Replica.gpus).where(
                        Replica.state.in_(LIVE_REPLICA_STATES)
                    )
                )
                .all()
            )
            snapshot = Snapshot(
                nodes=self._free(used),
                pending=tuple(PendingWorkload(i, self._specs[i].demands) for i in pending_ids),
            )
            decisions = decide(snapshot)
            admissions = decisions.admissions[:ADMIT_BATCH]
            more = len(decisions.admissions) > ADMIT_BATCH
            self._write_waiting(s, decisions.waiting)
            if not admissions:
                return False
            rows = {r.id: r for r in pending}
            events: list[dict[str, Any]] = []
            tokens: list[dict[str, Any]] = []
            for a in admissions:
                r = rows[a.workload_id]
                nodes = sorted({p.node for p in a.placements})
                _apply(s, r, State.ADMITTED, f"admitted on {', '.join(nodes)}", now, events,
                       attempt=r.attempt)  # fmt: skip
                self._waiting.pop(r.id, None)
                cached = self._specs.pop(r.id)
                token = new_token()
                tokens.append({"token_hash": hash_token(token), "user_id": r.user_id,
                               "workload_id": r.id, "created_at": now})  # fmt: skip
                plan = _Plan(r.id, r.attempt, cached.spec, cached.code, token, r.max_runtime_s)
                demands = {(d.role, d.replica): d for d in cached.demands}
                for p in a.placements:
                    port = self.executor.allocate_port(p.node)
                    lp = log_path(self.home, r.id, p.role, p.replica, r.attempt)
                    d = demands[(p.role, p.replica)]
                    rid = s.connection().execute(
                        insert(Replica)
                        .values(
                            workload_id=r.id, role=p.role, replica=p.replica, attempt=r.attempt,
                            state="launching", node=p.node, host=p.address, port=port,
                            gpus=list(p.gpus),
                            resources={"cpu": d.cpu, "memory": d.memory, "gpu": d.gpu},
                            handle=None, log_path=str(lp), stop_requested=False,
                        )
                        .returning(Replica.id)
                    ).scalar_one()  # fmt: skip
                    plan.replicas.append((rid, p.role, p.replica, p.node, p.gpus, lp))
                    plan.addresses.append(ReplicaAddress(p.role, p.replica, p.address, port))
                plans.append(plan)
            s.connection().execute(insert(Token), tokens)
            s.connection().execute(insert(Event), events)
        self._launch_all(plans)
        return more

    def _cache_specs(self, s: Any, pending_ids: Sequence[str]) -> None:
        """Specs, code records and demands of pending workloads, read once per workload
        (they never change), so a long queue costs a scan of small columns per cycle, not
        a JSON parse per row. ``wake(workload=...)`` fills it for new submissions."""
        missing = [i for i in pending_ids if i not in self._specs]
        for i in range(0, len(missing), 500):
            for wid, spec, code in s.connection().execute(
                select(Workload.id, Workload.spec, Workload.code).where(
                    Workload.id.in_(missing[i : i + 500])
                )
            ):
                self._specs[wid] = _Cached(spec, code, replica_demands(spec))
        if len(self._specs) > 2 * len(pending_ids) + 1000:
            keep = set(pending_ids)
            self._specs = {k: v for k, v in self._specs.items() if k in keep}

    def _free(self, used: list[Any]) -> tuple[NodeFree, ...]:
        cpu = {n.name: n.cpu for n in self.nodes}
        mem = {n.name: n.memory_mib for n in self.nodes}
        busy_gpus: dict[str, set[int]] = defaultdict(set)
        for node, res, gpus in used:
            if node in cpu:
                cpu[node] -= float(res.get("cpu", 0))
                mem[node] -= int(res.get("memory", 0))
                busy_gpus[node].update(gpus or ())
        free = []
        for n in self.nodes:
            gpus = tuple(g for g in range(n.gpu) if g not in busy_gpus[n.name])
            free.append(NodeFree(n.name, n.address, cpu[n.name], mem[n.name], gpus))
        return tuple(free)

    def _write_waiting(self, s: Any, waiting: dict[str, str]) -> None:
        """Record why pending workloads wait, only when the reason changed (few writes)."""
        for wid, why in list(waiting.items())[:100]:
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
        """Start every plan, then record handles and ``running`` in one transaction."""
        results = [(plan, *self._start(plan)) for plan in plans]
        trouble = False
        with self.db.session() as s:
            current = {
                r.id: r
                for r in s.connection().execute(
                    select(*_WROW).where(Workload.id.in_([p.workload_id for p in plans]))
                )
            }
            events: list[dict[str, Any]] = []
            for plan, handles, error, when in results:
                for rid, *_ in plan.replicas:
                    if rid in handles:
                        values = {"handle": handles[rid], "state": "running", "started_at": when}
                    else:
                        values = {"state": "failed", "finished_at": when}
                    s.connection().execute(
                        update(Replica).where(Replica.id == rid).values(**values)
                    )
                r = current[plan.workload_id]
                if r.state != State.ADMITTED:
                    trouble = True  # cancelled meanwhile: observe() stops what was started
                elif error is not None:
                    trouble = True
                    _apply(s, r, State.FAILED, error, when, events)
                else:
                    nodes = sorted({x[3] for x in plan.replicas})
                    _apply(
                        s, r, State.RUNNING,
                        f"{len(handles)} replica(s) started on {', '.join(nodes)} "
                        f"(attempt {plan.attempt})",
                        when, events,
                        values={"deadline_at": when + timedelta(seconds=plan.max_runtime_s)},
                        attempt=plan.attempt,
                    )  # fmt: skip
                    self._due_in(plan.max_runtime_s)
            if events:
                s.connection().execute(insert(Event), events)
        for _plan, handles, _error, _when in results:
            for h in handles.values():
                self._watch(h)
        if trouble:
            self.wake()
