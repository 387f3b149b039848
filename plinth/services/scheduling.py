"""The bridge between the database and the pure quota scheduler (``plinth.scheduler``).

``build_snapshot`` reads, in the caller's transaction, everything one cycle looks at:
nodes (the executor's inventory), groups with their quotas and caps, users with their
personal caps, active and future expansions and reservations, running workloads (from
their live replicas: what really holds resources) and pending workloads in queue order,
plus the usage history for fair share. Times are UNIX seconds.

A workload whose replicas still run although it is no longer running (cancelled,
failed, a retry or a preemption waiting for the old attempt to exit) is given to the
scheduler as a running workload with ``preempting=True``: its resources are still held,
on the node and against its group's quota, until its replicas are gone. Such an entry
of a workload that is pending again carries the id ``<id>@<attempt>`` so that the two
entries never collide.

The read-side helpers (``queue``, ``explain_job``, ``group_statuses``) run a cycle over
a fresh snapshot without applying anything: what the control loop would decide now.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.orm import Session

from plinth import scheduler as core
from plinth.executors.base import NodeCapacity
from plinth.services.lifecycle import State
from plinth.store.models import (
    Group,
    QuotaExpansion,
    ReclaimHold,
    Replica,
    Reservation,
    User,
    Workload,
)

__all__ = [
    "LIVE_REPLICA_STATES",
    "QUEUE_HEADS_PER_GROUP",
    "SNAPSHOT_TABLES",
    "SnapshotInfo",
    "apply_holds",
    "build_snapshot",
    "epoch",
    "from_epoch",
    "limit_dict",
    "pending_workload",
    "queue_heads",
    "read_holds",
    "resources",
    "resources_dict",
]

LIVE_REPLICA_STATES = ("launching", "running")
# Submission order as the scheduler's last tie-breaker: increasing in the order
# workloads are first seen, which is queue order (queued_at, id).
_SEQ = itertools.count()
# Pending workloads of each group given to one cycle (its queue heads, by queue time):
# the default of ``SchedulerConfig.queue_heads_per_group``.
QUEUE_HEADS_PER_GROUP = core.SchedulerConfig().queue_heads_per_group
# The tables a snapshot is read from: unchanged commit counters on these
# (``Database.versions``) mean a snapshot read before is still what a new read would give.
SNAPSHOT_TABLES = tuple(
    m.__tablename__
    for m in (Group, User, QuotaExpansion, Reservation, Workload, Replica, ReclaimHold)
)


def epoch(t: datetime) -> float:
    """Aware (or naive UTC) datetime -> UNIX seconds."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def from_epoch(s: float) -> datetime:
    """UNIX seconds -> aware UTC datetime."""
    return datetime.fromtimestamp(s, UTC)


def resources(q: dict[str, Any] | None) -> core.Resources:
    """A stored quantity ``{"cpu", "memory" (MiB), "gpu"}`` as the core's vector."""
    return core.Resources.from_dict(q)


_UNCAPPED = 2**53  # a dimension a cap leaves out is not capped


def _cap(q: dict[str, Any]) -> core.Resources:
    """An admin cap or limit (``max_job``, a user's ``cap``, ``borrow_limit``,
    ``lend_limit``): only the dimensions given are capped; ``0`` written is zero."""
    return core.Resources(
        float(q.get("cpu", _UNCAPPED)),
        int(q.get("memory", _UNCAPPED)),
        int(q.get("gpu", _UNCAPPED)),
    )


def limit_dict(r: core.Resources) -> dict[str, Any]:
    """A cap as the core holds it, as stored: only the resources that are capped."""
    return {k: v for k, v in resources_dict(r).items() if v < _UNCAPPED}


def resources_dict(r: core.Resources) -> dict[str, Any]:
    return r.to_dict()


def roles_of(spec: dict[str, Any]) -> tuple[core.Role, ...]:
    """The roles of a normalised spec as the core's gang description."""
    return tuple(
        core.Role(name, int(r["replicas"]), resources(r["resources"]))
        for name, r in spec["roles"].items()
    )


@dataclass
class SnapshotInfo:
    """A snapshot plus the database facts needed to apply its decisions."""

    snapshot: core.Snapshot
    group_ids: dict[str, int] = field(default_factory=dict)  # group name -> id
    pending: dict[str, int] = field(default_factory=dict)  # pending id -> its attempt
    running: dict[str, str] = field(default_factory=dict)  # scheduler id -> workload id
    # node -> GPU indices held by live replicas (the service assigns devices, not the core)
    busy_gpus: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))


def pending_workload(w: Any, group: str, user: str) -> core.Workload:
    """A pending workload as the scheduler sees it. `w`: a row or ``Workload`` with id,
    spec, max_runtime_s, queued_at, kind and priority; `group` and `user` are names."""
    return core.Workload(
        id=w.id, group=group, user=user, roles=roles_of(w.spec),
        max_runtime_s=float(w.max_runtime_s), queue_time=epoch(w.queued_at), kind=w.kind,
        priority=w.priority, seq=next(_SEQ),
        # A booked notebook (services.notebooks) waits for its reservation's window.
        reservation=(w.spec or {}).get("reservation"),
    )  # fmt: skip


def _with_reservations(conn: Any, running: list[core.Workload]) -> list[core.Workload]:
    """Running booked notebooks with the reservation they use (so the window's hold
    counts what they hold). One narrow read, only when notebooks run."""
    ids = [w.id for w in running if w.kind == "notebook"]
    if not ids:
        return running
    booked = {
        wid: spec["reservation"]
        for wid, spec in conn.execute(
            select(Workload.id, Workload.spec).where(Workload.id.in_(ids))
        )
        if isinstance(spec, dict) and spec.get("reservation")
    }
    if not booked:
        return running
    return [dataclasses.replace(w, reservation=booked[w.id]) if w.id in booked else w
            for w in running]  # fmt: skip


def build_snapshot(
    s: Session,
    nodes: Sequence[NodeCapacity],
    now: datetime,
    *,
    usage: Iterable[core.UsageRecord] = (),
    cache: dict[tuple[str, int], core.Workload] | None = None,
    heads_per_group: int = QUEUE_HEADS_PER_GROUP,
) -> SnapshotInfo:
    """Read the cycle's input in transaction `s` (see the module docstring).

    Pending work: the first `heads_per_group` workloads of every group in queue order
    (fair scanning: one group's backlog never hides another's heads), plus every
    claimant holding reclaimed capacity.

    `cache` keeps pending workloads' scheduler values across cycles, keyed by (id,
    attempt); missing entries are read and added, stale ones trimmed.
    ``info.pending`` maps each pending id to its attempt.
    """
    conn = s.connection()
    t_now = epoch(now)
    info = SnapshotInfo(snapshot=core.Snapshot(now=t_now, nodes=(), groups=()))
    gname: dict[int, str] = {}
    groups = []
    for g in conn.execute(
        select(
            Group.id,
            Group.name,
            Group.quota,
            Group.lend_limit,
            Group.borrow_limit,
            Group.max_job,
            Group.max_runtime_s,
            Group.max_workloads_per_user,
        )
    ):
        gname[g.id] = g.name
        info.group_ids[g.name] = g.id
        groups.append(
            core.Group(
                name=g.name,
                nominal=resources(g.quota),
                lend_limit=None if g.lend_limit is None else _cap(g.lend_limit),
                borrow_limit=None if g.borrow_limit is None else _cap(g.borrow_limit),
                max_job=None if g.max_job is None else _cap(g.max_job),
                max_runtime_s=g.max_runtime_s,
                max_workloads_per_user=g.max_workloads_per_user,
            )
        )
    uname: dict[int, str] = {}
    users = []
    for u in conn.execute(select(User.id, User.name, User.group_id, User.cap)):
        uname[u.id] = u.name
        users.append(
            core.User(
                u.name, gname.get(u.group_id, ""), None if u.cap is None else _cap(u.cap)
            )
        )
    expansions = tuple(
        core.Expansion(
            add=resources(e.add),
            start=epoch(e.start),
            end=epoch(e.end),
            group=gname.get(e.group_id) if e.group_id is not None else None,
            user=uname.get(e.user_id) if e.user_id is not None else None,
            reason=e.reason,
            granted_by=e.granted_by,
        )
        for e in conn.execute(select(QuotaExpansion).where(QuotaExpansion.end > now))
    )
    holds = read_holds(conn, gname)
    reservations = tuple(
        core.Reservation(
            id=r.id,
            resources=resources(r.resources),
            start=epoch(r.start),
            end=epoch(r.end),
            group=gname.get(r.group_id) if r.group_id is not None else None,
            user=uname.get(r.user_id) if r.user_id is not None else None,
            node=r.node,
        )
        for r in conn.execute(select(Reservation).where(Reservation.end > now))
    )

    # Running: grouped from live replicas, which is what really holds resources.
    live = conn.execute(
        select(
            Replica.workload_id,
            Replica.attempt,
            Replica.role,
            Replica.replica,
            Replica.node,
            Replica.resources,
            Replica.gpus,
            Workload.state,
            Workload.attempt.label("w_attempt"),
            Workload.group_id,
            Workload.user_id,
            Workload.kind,
            Workload.priority,
            Workload.queued_at,
            Workload.admitted_at,
            Workload.max_runtime_s,
            Workload.preempted_at,
        )
        .join(Workload, Replica.workload_id == Workload.id)
        .where(Replica.state.in_(LIVE_REPLICA_STATES))
        .order_by(Replica.workload_id, Replica.attempt, Replica.role, Replica.replica)
    ).all()
    by_attempt: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for r in live:
        by_attempt[(r.workload_id, r.attempt)].append(r)
        info.busy_gpus[r.node].update(r.gpus or ())
    running = []
    for (wid, attempt), reps in by_attempt.items():
        r0 = reps[0]
        current = attempt == r0.w_attempt and r0.state in (State.RUNNING, State.ADMITTED)
        sid = wid if current else f"{wid}@{attempt}"
        info.running[sid] = wid
        per_role: dict[str, list[Any]] = defaultdict(list)
        for r in reps:
            per_role[r.role].append(r)
        roles = tuple(
            core.Role(name, len(rs), resources(rs[0].resources)) for name, rs in per_role.items()
        )
        placements = {name: tuple(r.node for r in rs) for name, rs in per_role.items()}
        started = r0.admitted_at or r0.queued_at
        running.append(
            core.Workload(
                id=sid,
                group=gname.get(r0.group_id, ""),
                user=uname.get(r0.user_id, ""),
                roles=roles,
                max_runtime_s=float(r0.max_runtime_s),
                queue_time=epoch(r0.queued_at),
                kind=r0.kind,
                priority=r0.priority,
                start_time=epoch(started),
                placements=placements,
                preempting=not current or r0.preempted_at is not None,
            )
        )

    running = _with_reservations(conn, running)

    # Pending: the queue head's ids in queue order (a narrow indexed scan); each
    # workload's scheduler value is built once per attempt and cached by the caller
    # (it never changes while pending), so a long queue costs little per cycle.
    head = queue_heads(conn, gname, now, heads_per_group, [h.claimant for h in holds])
    cache = {} if cache is None else cache
    missing = [wid for wid, attempt in head if (wid, attempt) not in cache]
    for i in range(0, len(missing), 500):
        for r in conn.execute(
            select(
                Workload.id, Workload.attempt, Workload.group_id, Workload.user_id,
                Workload.kind, Workload.priority, Workload.max_runtime_s, Workload.queued_at,
                Workload.spec,
            ).where(Workload.id.in_(missing[i : i + 500]))
        ):  # fmt: skip
            cache[(r.id, r.attempt)] = pending_workload(
                r, gname.get(r.group_id, ""), uname.get(r.user_id, "")
            )
    pending = []
    for wid, attempt in head:
        w = cache.get((wid, attempt))
        if w is not None:  # None: it changed attempt between the two reads
            pending.append(w)
            info.pending[wid] = attempt
    if len(cache) > 4 * max(len(head), QUEUE_HEADS_PER_GROUP):
        keep = {(wid, attempt) for wid, attempt in head}
        for k in [k for k in cache if k not in keep]:
            del cache[k]
    info.snapshot = core.Snapshot(
        now=t_now,
        nodes=tuple(
            core.Node(n.name, n.resources) for n in nodes
        ),
        groups=tuple(groups),
        users=tuple(users),
        expansions=expansions,
        reservations=reservations,
        running=tuple(running),
        pending=tuple(pending),
        usage_history=tuple(usage),
        reclaim_holds=holds,
    )
    return info


def queue_heads(
    conn: Any, group_names: dict[int, str], now: datetime, per_group: int,
    also: Sequence[str] = (),
) -> list[tuple[str, int]]:
    """(id, attempt) of the pending workloads one cycle looks at, in queue order: the
    first `per_group` of each group (one indexed range scan per group), plus the
    workloads `also` names that are pending."""
    ready = (Workload.state == State.PENDING.value,
             or_(Workload.not_before.is_(None), Workload.not_before <= now))
    rows: dict[str, tuple[datetime, str, int]] = {}
    if per_group > 0:
        for gid in group_names:
            for r in conn.execute(
                select(Workload.queued_at, Workload.id, Workload.attempt)
                .where(Workload.group_id == gid, *ready)
                .order_by(Workload.queued_at, Workload.id)
                .limit(per_group)
            ):  # fmt: skip
                rows[r.id] = (r.queued_at, r.id, r.attempt)
    extra = [wid for wid in also if wid not in rows]
    if extra:
        for r in conn.execute(
            select(Workload.queued_at, Workload.id, Workload.attempt)
            .where(Workload.id.in_(extra), *ready)
        ):  # fmt: skip
            rows[r.id] = (r.queued_at, r.id, r.attempt)
    return [(wid, attempt) for _, wid, attempt in sorted(rows.values())]


def read_holds(conn: Any, group_names: dict[int, str]) -> tuple[core.ReclaimHold, ...]:
    """The recorded reclaim holds as the core's values."""
    return tuple(
        core.ReclaimHold(
            claimant=h.claimant_id,
            group=group_names.get(h.group_id, ""),
            victims=tuple(
                core.Victim(v["id"], {n: resources(q) for n, q in v["usage"].items()})
                for v in h.victims
            ),
            since=epoch(h.since),
            plan={n: resources(q) for n, q in (h.plan or {}).items()},
        )
        for h in conn.execute(select(ReclaimHold))
    )


def apply_holds(s: Session, info: SnapshotInfo, decisions: core.Decisions) -> None:
    """Write a cycle's reclaim holds in its transaction `s`: delete the released ones,
    record the new ones (replacing the claimant's earlier hold)."""
    conn = s.connection()
    gone = set(decisions.released_holds) | {h.claimant for h in decisions.holds}
    if gone:
        conn.execute(delete(ReclaimHold).where(ReclaimHold.claimant_id.in_(sorted(gone))))
    rows = [
        {
            "claimant_id": h.claimant,
            "group_id": info.group_ids[h.group],
            "victims": [
                {"id": v.id, "usage": {n: resources_dict(r) for n, r in v.usage.items()}}
                for v in h.victims
            ],
            "since": from_epoch(h.since),
            "plan": {n: resources_dict(r) for n, r in h.plan.items()},
        }
        for h in decisions.holds
        if h.group in info.group_ids and h.claimant in info.pending
    ]
    if rows:
        conn.execute(insert(ReclaimHold), rows)


def next_boundary(snapshot: core.Snapshot) -> float | None:
    """The next time (UNIX seconds) after ``now`` at which an expansion or reservation
    starts or ends: the scheduler's answer may change then, so a cycle must run."""
    times = [
        t
        for x in (*snapshot.expansions, *snapshot.reservations)
        for t in (x.start, x.end)
        if t > snapshot.now
    ]
    return min(times) if times else None
