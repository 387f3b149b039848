"""Quota groups (teams): create, read, change, delete. Admins write; members read their own."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from plinth.services.auth import Principal, require_admin, require_unscoped
from plinth.services.errors import Conflict, NotFound
from plinth.services.lifecycle import LIVE
from plinth.services.specs import GroupCreate, GroupPatch
from plinth.store.models import Group, User, Workload

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
    )
    session.add(g)
    session.flush()
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
        g.quota = req.quota.model_dump()
    if "borrow_limit" in req.model_fields_set:
        g.borrow_limit = req.borrow_limit.model_dump() if req.borrow_limit else None
    if "lend_limit" in req.model_fields_set:
        g.lend_limit = req.lend_limit.model_dump() if req.lend_limit else None
    return g


def delete_group(session: Session, p: Principal, name: str) -> None:
    """Delete a group; Conflict while it has users or live workloads."""
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
    session.delete(g)
