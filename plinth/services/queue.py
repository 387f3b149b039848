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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from plinth import scheduler as core
from plinth.executors.base import NodeCapacity
from plinth.scheduler.cycle import format_duration
from plinth.services.auth import Principal, require_unscoped
from plinth.services.jobs import get_job
from plinth.services.lifecycle import State
from plinth.services.scheduling import (
    SnapshotInfo,
    build_snapshot,
    from_epoch,
    resources_dict,
)
from plinth.store.models import QuotaExpansion, User, Workload, utcnow

__all__ = ["GroupView", "explain_job", "group_views", "queue_entries", "scheduler_view"]

_OUTCOME = {core.Outcome.FIT: "fit", core.Outcome.PREEMPT: "preempt", core.Outcome.NO_FIT: "wait"}


def scheduler_view(
    s: Session,
    nodes: Sequence[NodeCapacity],
    policy: core.SchedulerConfig,
    usage: Iterable[core.UsageRecord] = (),
    now: datetime | None = None,
) -> tuple[SnapshotInfo, core.Decisions]:
    """A snapshot of now and the cycle the scheduler would run on it (nothing applied)."""
    info = build_snapshot(s, nodes, now or utcnow(), usage=usage)
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
    info = build_snapshot(s, nodes, now, usage=usage, pending_limit=1_000_000)
    d = core.schedule(info.snapshot, policy)
    if w.id not in info.pending:  # pragma: no cover - it was pending a moment ago
        base["text"] = f"job {w.id} is not in the queue any more: {w.reason}"
        return base
    b = d.score(w.id)
    base.update(
        position=d.position(w.id),
        score={"total": b.total, "factors": dict(b.factors), "weights": dict(b.weights)},
        outcome=_OUTCOME[d.outcomes.get(w.id, core.Outcome.NO_FIT)],
        reason=d.reasons.get(w.id, ""),
        text=core.explain(info.snapshot, policy, w.id, decisions=d),
    )
    return base


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
    info = build_snapshot(s, nodes, now, pending_limit=0)
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
                "cap": None if u.cap is None else resources_dict(u.cap),
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
