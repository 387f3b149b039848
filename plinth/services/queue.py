"""What the scheduler would decide now, for people: the queue with score breakdowns,
``explain`` for one job, and each group's quota picture.

Each call reads a fresh snapshot (``services.scheduling``) and runs one pure cycle over
it without applying anything, so what it shows is exactly the control loop's next
decision given the current state.

Visibility: admins see every entry. Members see only their own group's entries in the
queue; others' entries are left out, but positions stay global (a gap in the
positions is where other groups' work ranks), so a member learns where their work
stands without learning what others run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from plinth import scheduler as core
from plinth.executors.base import NodeCapacity
from plinth.scheduler.cycle import format_duration
from plinth.scheduler.tracefile import dump_trace
from plinth.services.auth import Principal, require_admin, require_unscoped
from plinth.services.jobs import get_job
from plinth.services.lifecycle import State
from plinth.services.scheduling import (
    SnapshotInfo,
    build_snapshot,
    epoch,
    from_epoch,
    limit_dict,
    resources_dict,
    roles_of,
)
from plinth.store.models import Group, QuotaExpansion, User, Workload, utcnow

__all__ = [
    "GroupView",
    "explain_job",
    "group_views",
    "history_trace",
    "queue_entries",
    "scheduler_view",
]

_OUTCOME = {core.Outcome.FIT: "fit", core.Outcome.PREEMPT: "preempt", core.Outcome.NO_FIT: "wait"}


def scheduler_view(
    s: Session,
    nodes: Sequence[NodeCapacity],
    policy: core.SchedulerConfig,
    usage: Iterable[core.UsageRecord] = (),
    now: datetime | None = None,
) -> tuple[SnapshotInfo, core.Decisions]:
    """A snapshot of now and the cycle the scheduler would run on it (nothing applied)."""
    info = build_snapshot(s, nodes, now or utcnow(), usage=usage,
                          heads_per_group=policy.queue_heads_per_group)
    return info, core.schedule(info.snapshot, policy)


def queue_entries(
    s: Session,
    p: Principal,
    nodes: Sequence[NodeCapacity],
    policy: core.SchedulerConfig,
    usage: Iterable[core.UsageRecord] = (),
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Pending workloads in the scheduler's order, each with its score breakdown,
    outcome (``fit``: starts at the next cycle; ``preempt``: waits for preemptions made
    for it; ``wait``) and the reason it waits. Members see only their own group's."""
    require_unscoped(p)
    info, d = scheduler_view(s, nodes, policy, usage)
    pending = {w.id: w for w in info.snapshot.pending}
    names: dict[str, str] = {}
    if pending:
        rows = s.execute(select(Workload.id, Workload.name).where(Workload.id.in_(list(pending))))
        names = {wid: name for wid, name in rows}
    out: list[dict[str, Any]] = []
    now = info.snapshot.now
    for pos, wid in enumerate(d.queue, start=1):
        w = pending.get(wid)
        if w is None or (not p.admin and w.group != p.group):
            continue
        b = d.score(wid)
        outcome = d.outcomes.get(wid, core.Outcome.NO_FIT)
        out.append({
            "position": pos, "id": wid, "name": names.get(wid, ""), "kind": w.kind,
            "group": w.group, "user": w.user, "priority": w.priority,
            "queued_at": from_epoch(w.queue_time), "waiting_s": max(0.0, now - w.queue_time),
            "requests": resources_dict(w.total), "max_runtime": w.max_runtime_s,
            "score": {"total": b.total, "factors": dict(b.factors), "weights": dict(b.weights)},
            "outcome": _OUTCOME[outcome], "reason": d.reasons.get(wid, ""),
        })  # fmt: skip
        if len(out) >= limit:
            break
    return out


def explain_job(
    s: Session,
    p: Principal,
    job_id: str,
    nodes: Sequence[NodeCapacity],
    policy: core.SchedulerConfig,
    usage: Iterable[core.UsageRecord] = (),
) -> dict[str, Any]:
    """Why job `job_id` waits (or what it is doing), in words and numbers.

    ``text`` is the scheduler's explanation for a pending job (position, requests,
    score breakdown, the exact reason with numbers); for other states a sentence saying
    what the job is doing. NotFound when the caller may not see the job."""
    w = get_job(s, p, job_id)
    base: dict[str, Any] = {"id": w.id, "state": w.state, "position": None, "score": None,
                            "outcome": None, "reason": w.reason}  # fmt: skip
    now = utcnow()
    if w.state != State.PENDING:
        what = {
            State.ADMITTED: "admitted; its replicas are starting",
            State.RUNNING: "running",
        }.get(State(w.state), f"finished ({w.state})")
        if w.state == State.RUNNING and w.preempted_at is not None:
            what = "being preempted: its replicas are stopping, then it returns to the queue"
        base["text"] = f"job {w.id} is {what}, not waiting: {w.reason}"
        return base
    if w.not_before is not None and w.not_before > now:
        base["text"] = (
            f"job {w.id} waits for its retry backoff until "
            f"{w.not_before.isoformat(timespec='seconds')} "
            f"({format_duration((w.not_before - now).total_seconds())}); then the scheduler "
            f"considers it again. Last: {w.reason}"
        )
        return base
    # The very input the control loop's cycle reads: its queue heads per group.
    info = build_snapshot(s, nodes, now, usage=usage,
                          heads_per_group=policy.queue_heads_per_group)
    if w.id not in info.pending:
        ahead = _ahead_in_group(s, w)
        base["text"] = (
            f"job {w.id} is number {ahead + 1} in group {w.spec.get('group', '')}'s queue;"
            f" each scheduling cycle considers the first {policy.queue_heads_per_group} pending"
            f" workloads of every group, so it is not considered yet: it moves up as the"
            f" {ahead} ahead of it start or leave. Last: {w.reason}")
        return base
    d = core.schedule(info.snapshot, policy)
    b = d.score(w.id)
    base.update(
        position=d.position(w.id),
        score={"total": b.total, "factors": dict(b.factors), "weights": dict(b.weights)},
        outcome=_OUTCOME[d.outcomes.get(w.id, core.Outcome.NO_FIT)],
        reason=d.reasons.get(w.id, ""),
        text=core.explain(info.snapshot, policy, w.id, decisions=d),
    )
    return base


def _ahead_in_group(s: Session, w: Workload) -> int:
    """How many pending workloads of `w`'s group come before it in queue order."""
    return s.scalar(
        select(func.count()).select_from(Workload).where(
            Workload.group_id == w.group_id, Workload.state == State.PENDING.value,
            or_(Workload.queued_at < w.queued_at,
                and_(Workload.queued_at == w.queued_at, Workload.id < w.id)))
    ) or 0


@dataclass
class GroupView:
    """A group's quota picture now (``plinth group list``)."""

    status: core.GroupStatus
    users: dict[str, dict[str, Any]]  # user name -> {"cap", "used"}
    expansions: list[QuotaExpansion]
    user_names: dict[int, str]  # user id -> name (to render user expansions)


def group_views(
    s: Session, nodes: Sequence[NodeCapacity], names: Iterable[str] | None = None
) -> dict[str, GroupView]:
    """Group name -> its view: effective nominal (with active expansions), used,
    borrowed, lent, lendable, guaranteed; per user cap and use; active expansions."""
    now = utcnow()
    info = build_snapshot(s, nodes, now, heads_per_group=0)
    want = set(names) if names is not None else None
    usage = core.user_usage(info.snapshot)
    gid_name = {v: k for k, v in info.group_ids.items()}
    out: dict[str, GroupView] = {}
    for st in core.group_status(info.snapshot):
        if want is None or st.name in want:
            out[st.name] = GroupView(st, {}, [], {})
    for u in info.snapshot.users:
        if u.group in out:
            used = usage.get(u.name, core.Resources())
            out[u.group].users[u.name] = {
                "cap": None if u.cap is None else limit_dict(u.cap),
                "used": resources_dict(used),
            }
    active = s.scalars(
        select(QuotaExpansion).where(QuotaExpansion.start <= now, QuotaExpansion.end > now)
    ).all()
    if active:
        user_group: dict[int, int] = {}
        user_name: dict[int, str] = {}
        for uid, ugid, uname in s.execute(select(User.id, User.group_id, User.name)):
            user_group[uid] = ugid  # a user's expansion shows under the user's group
            user_name[uid] = uname
        for v in out.values():
            v.user_names = user_name
        for e in active:
            gid = e.group_id if e.group_id is not None else user_group.get(e.user_id)
            name = gid_name.get(gid) if gid is not None else None
            if name in out:
                out[name].expansions.append(e)
    return out


def history_trace(
    s: Session, p: Principal, nodes: Sequence[NodeCapacity], since_s: float
) -> list[dict[str, Any]]:
    """The server's recorded history as a scheduler trace (the JSONL objects of
    ``plinth.scheduler.tracefile``), admins only: a cluster line (the executor's nodes,
    the groups as they are now), then every workload submitted in the last `since_s`
    seconds, arrival relative to the first. ``runtime``: how long its last attempt ran
    (still running: so far; never started: its ``max_runtime``). Work cancelled
    before it ever started is left out: it asked for nothing."""
    require_admin(p)
    now = utcnow()
    info = build_snapshot(s, nodes, now, heads_per_group=0)
    cluster = json.loads(next(dump_trace((), info.snapshot.nodes, info.snapshot.groups)))
    rows = s.execute(
        select(Workload, Group.name, User.name)
        .join(Group, Workload.group_id == Group.id).join(User, Workload.user_id == User.id)
        .where(Workload.created_at >= now - timedelta(seconds=since_s))
        .order_by(Workload.created_at, Workload.id)
    ).all()
    out: list[dict[str, Any]] = [cluster]
    t0 = epoch(rows[0][0].created_at) if rows else 0.0
    for seq, (w, group, user) in enumerate(rows, start=1):
        began = w.started_at or w.admitted_at
        if began is None and w.state == State.CANCELLED:
            continue
        if began is None:
            runtime = w.max_runtime_s
        else:
            runtime = max(0.0, ((w.finished_at or now) - began).total_seconds())
        out.append({
            "type": "workload", "id": w.id, "group": group, "user": user,
            "arrival": epoch(w.created_at) - t0, "runtime": min(runtime, w.max_runtime_s),
            "max_runtime": w.max_runtime_s, "kind": w.kind, "priority": w.priority,
            "roles": {r.name: {"replicas": r.replicas, "resources": resources_dict(r.resources)}
                      for r in roles_of(w.spec)},
            "seq": seq,
        })  # fmt: skip
    return out
