"""Time-boxed quota expansions: an admin grants a group or a user extra quota for a
window; the scheduler counts it while ``start <= now < end``, so it takes effect and
expires by itself. Rows are kept: expired grants are the history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from plinth.services.audit import record_audit
from plinth.services.auth import Principal, require_admin, require_unscoped
from plinth.services.errors import Invalid, NotFound
from plinth.services.specs import ExpansionCreate
from plinth.store.models import Group, QuotaExpansion, User, utcnow

__all__ = ["ExpansionRow", "grant_expansion", "list_expansions", "owner_ids", "status"]

ExpansionRow = tuple[QuotaExpansion, str | None, str | None]  # row, group name, user name


def owner_ids(
    session: Session, group: str | None, user: str | None
) -> tuple[int | None, int | None]:
    """(group id, user id) of the named owner; NotFound when it does not exist."""
    if group is not None:
        gid = session.scalar(select(Group.id).where(Group.name == group))
        if gid is None:
            raise NotFound(f"group {group!r} not found")
        return gid, None
    uid = session.scalar(select(User.id).where(User.name == user))
    if uid is None:
        raise NotFound(f"user {user!r} not found")
    return None, uid


def grant_expansion(session: Session, p: Principal, req: ExpansionCreate) -> ExpansionRow:
    """Grant extra quota (admin). The window must end in the future and add something."""
    require_admin(p)
    now = utcnow()
    start = req.start or now
    if req.end <= now:
        raise Invalid(f"end: {req.end.isoformat()} is in the past; an expansion must end later")
    if req.add.cpu <= 0 and req.add.memory <= 0 and req.add.gpu <= 0:
        raise Invalid("add: give at least one resource to add, e.g. gpu=2")
    gid, uid = owner_ids(session, req.group, req.user)
    e = QuotaExpansion(
        group_id=gid, user_id=uid, add=req.add.model_dump(), start=start, end=req.end,
        reason=req.reason, granted_by=p.user, created_at=now,
    )  # fmt: skip
    session.add(e)
    session.flush()
    record_audit(session, p, "expansion.grant",
                 f"group:{req.group}" if req.group else f"user:{req.user}",
                 {"id": e.id, **req.model_dump(mode="json", exclude={"group", "user"})})  # fmt: skip
    return e, req.group, req.user


def list_expansions(
    session: Session, p: Principal, *, active_only: bool = False, now: datetime | None = None
) -> list[ExpansionRow]:
    """Expansions, newest first, with history. Admins see all; members those of their
    group and their own."""
    require_unscoped(p)
    q = (
        select(QuotaExpansion, Group.name, User.name)
        .outerjoin(Group, QuotaExpansion.group_id == Group.id)
        .outerjoin(User, QuotaExpansion.user_id == User.id)
        .order_by(QuotaExpansion.created_at.desc(), QuotaExpansion.id.desc())
    )
    if not p.admin:
        q = q.where(or_(QuotaExpansion.group_id == p.group_id, QuotaExpansion.user_id == p.user_id))
    if active_only:
        now = now or utcnow()
        q = q.where(QuotaExpansion.start <= now, QuotaExpansion.end > now)
    return [(e, g, u) for e, g, u in session.execute(q)]


def status(e: QuotaExpansion, now: datetime | None = None) -> str:
    """``scheduled``, ``active`` or ``expired`` at `now`."""
    now = now or utcnow()
    if now < e.start:
        return "scheduled"
    return "active" if now < e.end else "expired"
