"""Applying one scheduling cycle's decisions, in the caller's ONE write transaction.

``apply_decisions`` is the only place where the quota scheduler's output becomes
database state. The caller holds the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL:
the admission advisory lock) from the snapshot's read to the commit, so what is
written is exactly what the scheduler saw. It writes:

preemptions
    each victim keeps state ``running`` with ``preempted_at`` set, its live replicas
    ``stop_requested``, an event ``preempted`` with the scheduler's reason; the
    replicas to SIGTERM are returned (``Admitted.to_stop``) for after the commit.
admissions (at most ``ADMIT_BATCH``)
    state ``admitted``; one replica row per replica (``launching``, node, GPU indices,
    port, log path) -- a ``PlannedReplica`` each; a workload-scoped token; an event.
    Every transition is guarded by the state read (``guarded_transition``): a workload
    cancelled meanwhile (a cancel takes no admission lock) is skipped.

Nothing is launched here: ``services.launching`` starts the returned ``LaunchPlan``s
once the transaction has committed (a crash between the two leaves rows
``launching``, which ``reconcile`` resolves at the next start).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from plinth import scheduler as core
from plinth.executors.base import Executor, NodeCapacity
from plinth.services.admission import ReplicaDemand
from plinth.services.auth import hash_token, new_token
from plinth.services.jobs import replica_demands
from plinth.services.lifecycle import State, transition
from plinth.services.replica_env import ReplicaAddress
from plinth.services.scheduling import SnapshotInfo, apply_holds
from plinth.services.workdirs import log_path
from plinth.store.models import Event, Replica, Token, Workload

__all__ = [
    "ADMIT_BATCH",
    "WORKLOAD_LIFECYCLE_COLUMNS",
    "Admitted",
    "LaunchPlan",
    "PlannedReplica",
    "SpecCache",
    "apply_decisions",
    "checked_admissions",
    "guarded_transition",
]

log = logging.getLogger("plinth.control_loop")

ADMIT_BATCH = 32  # workloads admitted per transaction; more are taken in the next round


@dataclass(frozen=True)
class PlannedReplica:
    """One replica row written at admission, to be started after the commit."""

    id: int  # the Replica row's id
    role: str
    replica: int
    node: str
    gpus: tuple[int, ...]  # device indices on `node`
    log_path: Path
    resources: dict[str, Any] | None = None  # {cpu, memory (MiB), gpu}: Resources.to_dict()


@dataclass
class LaunchPlan:
    """What admission hands to launching for one workload."""

    workload_id: str
    attempt: int
    spec: dict[str, Any]
    code: dict[str, Any] | None
    token: str  # plaintext, for PLINTH_TOKEN; only its hash is stored
    max_runtime_s: float
    replicas: list[PlannedReplica] = field(default_factory=list)
    addresses: list[ReplicaAddress] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return sorted({r.node for r in self.replicas})


@dataclass
class Admitted:
    """Decisions applied in a transaction, to act on once it has committed."""

    plans: list[LaunchPlan]
    to_stop: list[tuple[int, dict[str, Any]]]  # preempted replicas: (id, handle)
    more: bool  # the batch was cut: more admissions may be waiting
    preempted: list[str] = field(default_factory=list)  # reasons of the preemptions written


@dataclass(frozen=True)
class _Cached:
    spec: dict[str, Any]
    code: dict[str, Any] | None
    demands: tuple[ReplicaDemand, ...]


class SpecCache:
    """Specs, code records and replica demands of pending workloads, so that admitting
    one needs no read of its spec (a submit hands it over; others are read in batches)."""

    MAX = 5000

    def __init__(self) -> None:
        self._by_id: dict[str, _Cached] = {}

    def put(self, workload_id: str, spec: dict[str, Any], code: dict[str, Any] | None) -> None:
        # A plain dict assignment: atomic under the GIL (request threads call this).
        self._by_id[workload_id] = _Cached(spec, code, replica_demands(spec))

    def take(self, workload_id: str) -> _Cached:
        return self._by_id.pop(workload_id)

    def load(self, s: Any, ids: Sequence[str]) -> None:
        """Read the entries of `ids` not cached yet (transaction `s`)."""
        missing = [i for i in ids if i not in self._by_id]
        for i in range(0, len(missing), 500):
            for wid, spec, code in s.connection().execute(
                select(Workload.id, Workload.spec, Workload.code).where(
                    Workload.id.in_(missing[i : i + 500])
                )
            ):
                self.put(wid, spec, code)
        if len(self._by_id) > self.MAX:
            keep = set(ids)
            self._by_id = {k: v for k, v in self._by_id.items() if k in keep}


# The lifecycle columns of a workload, enough for ``transition`` (plus its id).
WORKLOAD_LIFECYCLE_COLUMNS = (
    Workload.id,
    Workload.state,
    Workload.reason,
    Workload.admitted_at,
    Workload.started_at,
    Workload.finished_at,
)


@dataclass
class _Lifecycle:
    state: str
    reason: str
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


def guarded_transition(
    s: Any,
    row: Any,
    target: State,
    reason: str,
    now: datetime,
    events: list[dict[str, Any]],
    values: dict[str, Any] | None = None,
    **data: Any,
) -> bool:
    """Transition the workload `row` (a Core row with ``WORKLOAD_LIFECYCLE_COLUMNS``) to
    `target` with a Core UPDATE guarded by its current state, and queue the event in
    `events`.

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


def checked_admissions(info: SnapshotInfo, admissions: list[core.Admission]) -> list[core.Admission]:
    """The apply step's own guard: admissions that keep every node within its capacity.

    The scheduler guarantees this; checking again here (cheap) means a bug there can
    never over-commit a node: an offending admission is dropped and logged.
    """
    cap = {n.name: n.capacity for n in info.snapshot.nodes}
    used = {name: core.Resources() for name in cap}
    for w in info.snapshot.running:
        for node, v in w.node_usage().items():
            used[node] = used.get(node, core.Resources()) + core.Resources(*v)
    ok = []
    pending = {w.id: w for w in info.snapshot.pending}
    for a in admissions:
        w = pending.get(a.workload_id)
        if w is None:
            log.error("scheduler admitted %s, which is not pending; ignored", a.workload_id)
            continue
        per_role = {r.name: r.resources for r in w.roles}
        trial = dict(used)
        placed = [(node, per_role[role]) for role, nodes in a.placement.items() for node in nodes]
        fits = all(node in cap for node, _ in placed)
        if fits:
            for node, need in placed:
                trial[node] = trial[node] + need
            fits = all(trial[n].fits_in(cap[n]) for n in cap)
        if not fits:
            log.error("scheduler admission of %s would over-commit a node; ignored", w.id)
            continue
        used = trial
        ok.append(a)
    return ok


def _admitted_reason(a: core.Admission, nodes: list[str]) -> str:
    how = ""
    if a.borrows:
        how += " (borrowing idle quota of other groups; may be reclaimed)"
    if a.backfill:
        how += " (backfill: ends before the top blocked workload can start)"
    if a.reservation:
        how += f" (in reservation {a.reservation})"
    return f"admitted on {', '.join(nodes)}{how}"


def apply_decisions(
    s: Any,
    info: SnapshotInfo,
    decisions: core.Decisions,
    now: datetime,
    *,
    nodes: Sequence[NodeCapacity],
    executor: Executor,
    home: Path,
    specs: SpecCache,
    grace_s: float,
) -> Admitted | None:
    """Write one cycle's preemptions and admissions in transaction `s` (see the module
    docstring); None when there was nothing to write. `executor` is asked for ports
    only (``allocate_port``); `grace_s` is the reclaim grace told in the events."""
    events: list[dict[str, Any]] = []
    preempted: list[str] = []
    apply_holds(s, info, decisions)  # reclaim holds (plinth.scheduler.holds)
    to_stop = apply_preemptions(s, info, decisions.preemptions, now, events, grace_s, preempted)
    admissions = checked_admissions(info, decisions.admissions)[:ADMIT_BATCH]
    more = len(decisions.admissions) > ADMIT_BATCH
    if not admissions and not events:
        return None
    specs.load(s, [a.workload_id for a in admissions])
    rows = {
        r.id: r
        for r in s.connection().execute(
            select(*WORKLOAD_LIFECYCLE_COLUMNS, Workload.user_id, Workload.attempt,
                   Workload.max_runtime_s)
            .where(Workload.id.in_([a.workload_id for a in admissions]))
        )
    }  # fmt: skip
    free_gpus = {
        n.name: [g for g in range(n.gpu) if g not in info.busy_gpus[n.name]] for n in nodes
    }
    address = {n.name: n.address for n in nodes}
    tokens: list[dict[str, Any]] = []
    plans: list[LaunchPlan] = []
    for a in admissions:
        r = rows[a.workload_id]
        if r.state != State.PENDING.value:
            continue  # cancelled since the snapshot (a cancel takes no admission lock)
        placed = sorted({n for ns in a.placement.values() for n in ns})
        if not guarded_transition(s, r, State.ADMITTED, _admitted_reason(a, placed), now,
                                  events, attempt=r.attempt, borrows=a.borrows,
                                  backfill=a.backfill):  # fmt: skip
            continue  # cancelled meanwhile: no replicas, no token, no launch
        cached = specs.take(r.id)
        token = new_token()
        tokens.append({"token_hash": hash_token(token), "user_id": r.user_id,
                       "workload_id": r.id, "created_at": now})  # fmt: skip
        plan = LaunchPlan(r.id, r.attempt, cached.spec, cached.code, token, r.max_runtime_s)
        demands = {(d.role, d.replica): d for d in cached.demands}
        for role, role_nodes in a.placement.items():
            for i, node in enumerate(role_nodes):
                d = demands[(role, i)]
                gpus = tuple(free_gpus[node][: d.gpu])
                free_gpus[node] = free_gpus[node][d.gpu :]
                port = executor.allocate_port(node)
                lp = log_path(home, r.id, role, i, r.attempt)
                rid = s.connection().execute(
                    insert(Replica)
                    .values(
                        workload_id=r.id, role=role, replica=i, attempt=r.attempt,
                        state="launching", node=node, host=address[node], port=port,
                        gpus=list(gpus), resources=d.resources.to_dict(),
                        handle=None, log_path=str(lp), stop_requested=False,
                    )
                    .returning(Replica.id)
                ).scalar_one()  # fmt: skip
                plan.replicas.append(
                    PlannedReplica(rid, role, i, node, gpus, lp, d.resources.to_dict())
                )
                plan.addresses.append(ReplicaAddress(role, i, address[node], port))
        plans.append(plan)
    if tokens:
        s.connection().execute(insert(Token), tokens)
    if events:
        s.connection().execute(insert(Event), events)
    return Admitted(plans, to_stop, more, preempted)


def apply_preemptions(
    s: Any,
    info: SnapshotInfo,
    preemptions: Sequence[core.Preemption],
    now: datetime,
    events: list[dict[str, Any]],
    grace_s: float,
    preempted: list[str] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """Mark each preempted workload (it keeps its resources until its replicas exit)
    and return the replicas to SIGTERM once the transaction commits. The scheduler's
    reason of each preemption written is appended to `preempted`."""
    out: list[tuple[int, dict[str, Any]]] = []
    for p in preemptions:
        wid = info.running.get(p.workload_id)
        if wid is None or wid != p.workload_id:
            continue  # an old attempt already stopping: nothing more to do
        why = (
            f"preempted: {p.reason}; SIGTERM now, SIGKILL after {grace_s:g}s, then back "
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
        if preempted is not None:
            preempted.append(p.reason)
        events.append({
            "workload_id": wid, "type": "preempted", "reason": why, "time": now,
            "data": {"for_workload": p.for_workload, "grace_s": grace_s},
        })  # fmt: skip
        rows = s.connection().execute(
            select(Replica.id, Replica.handle)
            .join(Workload, Replica.workload_id == Workload.id)
            .where(Replica.workload_id == wid, Replica.attempt == Workload.attempt,
                   Replica.state == "running")
        ).all()  # fmt: skip
        if rows:
            s.connection().execute(
                update(Replica).where(Replica.id.in_([r.id for r in rows])).values(stop_requested=True)
            )
        out.extend((r.id, dict(r.handle or {})) for r in rows)
    return out
