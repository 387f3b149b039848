"""Quota groups (teams): create, read, change, delete. Admins write; members read their own."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from plinth.services.audit import record_audit
from plinth.services.auth import Principal, require_admin, require_unscoped
from plinth.services.errors import Conflict, NotFound
from plinth.services.lifecycle import LIVE
from plinth.services.specs import GroupCreate, GroupPatch
from plinth.store.models import Group, QuotaExpansion, Reservation, UsageRecord, User, Workload

__all__ = ["create_group", "delete_group", "get_group", "list_groups", "update_group"]


def _get(session: Session, name: str) -> Group:
    g = session.scalar(select(Group).where(Group.name == name))
    if g is None:
        raise NotFound(f"group {name!r} not found")
    return g


def create_group(session: Session, p: Principal, req: GroupCreate) -> Group:
    """Create a group; Conflict when the name is taken."""
    require_admin(p)
    if session.scalar(select(Group.id).where(Group.name == req.name)) is not None:
        raise Conflict(f"group {req.name!r} already exists")
    g = Group(
        name=req.name,
        quota=req.quota.model_dump(),
        borrow_limit=req.borrow_limit.model_dump() if req.borrow_limit else None,
        lend_limit=req.lend_limit.model_dump() if req.lend_limit else None,
        # Only the dimensions given are capped (max_job: {gpu: 8} leaves cpu uncapped).
        max_job=req.max_job.model_dump(exclude_unset=True) if req.max_job else None,
        max_runtime_s=req.max_runtime,
        max_workloads_per_user=req.max_workloads_per_user,
    )
    session.add(g)
    session.flush()
    record_audit(session, p, "group.create", f"group:{g.name}", req.model_dump(mode="json"))
    return g


def list_groups(session: Session, p: Principal) -> list[Group]:
    """All groups for admins; a member's own group otherwise."""
    require_unscoped(p)
    q = select(Group).order_by(Group.name)
    if not p.admin:
        q = q.where(Group.id == p.group_id)
    return list(session.scalars(q))


def get_group(session: Session, p: Principal, name: str) -> Group:
    """One group; members see only their own (others are 404)."""
    require_unscoped(p)
    g = _get(session, name)
    if not p.admin and g.id != p.group_id:
        raise NotFound(f"group {name!r} not found")
    return g


def update_group(session: Session, p: Principal, name: str, req: GroupPatch) -> Group:
    """Change the given fields of a group."""
    require_admin(p)
    g = _get(session, name)
    if req.quota is not None:
        # Only the resources given change (``--quota cpu=16`` keeps memory and gpu).
        g.quota = {**(g.quota or {}), **req.quota.model_dump(exclude_unset=True)}
    if "borrow_limit" in req.model_fields_set:
        g.borrow_limit = req.borrow_limit.model_dump() if req.borrow_limit else None
    if "lend_limit" in req.model_fields_set:
        g.lend_limit = req.lend_limit.model_dump() if req.lend_limit else None
    if "max_job" in req.model_fields_set:
        g.max_job = req.max_job.model_dump(exclude_unset=True) if req.max_job else None
    if "max_runtime" in req.model_fields_set:
        g.max_runtime_s = req.max_runtime
    if "max_workloads_per_user" in req.model_fields_set:
        g.max_workloads_per_user = req.max_workloads_per_user
    record_audit(session, p, "group.update", f"group:{g.name}",
                 req.model_dump(mode="json", exclude_unset=True))  # fmt: skip
    return g


def delete_group(session: Session, p: Principal, name: str) -> None:
    """Delete a group; Conflict while it has users, live workloads, expansions or
    reservations (their history is kept)."""
    require_admin(p)
    g = _get(session, name)
    users = session.scalar(select(func.count()).select_from(User).where(User.group_id == g.id))
    if users:
        raise Conflict(f"group {name!r} still has {users} user(s); delete or move them first")
    live = session.scalar(
        select(func.count())
        .select_from(Workload)
        .where(Workload.group_id == g.id, Workload.state.in_([s.value for s in LIVE]))
    )
    if live:
        raise Conflict(f"group {name!r} still has {live} live workload(s); cancel them first")
    finished = session.scalar(
        select(func.count()).select_from(Workload).where(Workload.group_id == g.id)
    )
    if finished:
        raise Conflict(
            f"group {name!r} has {finished} finished workload(s) in its history; "
            "groups with history are kept"
        )
    for table, what in ((QuotaExpansion, "quota expansion"), (Reservation, "reservation")):
        n = session.scalar(select(func.count()).select_from(table).where(table.group_id == g.id))
        if n:
            raise Conflict(f"group {name!r} has {n} {what}(s) in its history; it is kept")
    session.execute(delete(UsageRecord).where(UsageRecord.group_id == g.id))
    session.delete(g)
    record_audit(session, p, "group.delete", f"group:{name}")
