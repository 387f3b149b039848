"""Reservations: capacity kept free for a group or a user during a window (a notebook
booked for tomorrow 10:00-12:00). Admins create and delete them; members list those of
their group and their own. The scheduler keeps the capacity free: from ``start`` on only
the owner's work may use it, before that only work that ends by ``start``."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from plinth.executors.base import NodeCapacity
from plinth.scheduler.resources import Resources
from plinth.services.auth import Principal, require_admin, require_unscoped
from plinth.services.errors import Invalid, NotFound
from plinth.services.expansions import owner_ids
from plinth.services.specs import ReservationCreate
from plinth.store.models import Group, Reservation, User, utcnow

__all__ = ["ReservationRow", "create_reservation", "delete_reservation", "list_reservations"]

ReservationRow = tuple[Reservation, str | None, str | None]  # row, group name, user name


def _fits(node: NodeCapacity, q: dict[str, float]) -> bool:
    return Resources.from_dict(q).fits_in(node.resources)


def create_reservation(
    session: Session, p: Principal, req: ReservationCreate, nodes: Sequence[NodeCapacity]
) -> ReservationRow:
    """Book capacity (admin). It must fit one node (the named one when given) and end in
    the future."""
    require_admin(p)
    now = utcnow()
    if req.end <= now:
        raise Invalid(f"end: {req.end.isoformat()} is in the past; a reservation must end later")
    q = req.resources.model_dump()
    if q["cpu"] <= 0 and q["memory"] <= 0 and q["gpu"] <= 0:
        raise Invalid("resources: give at least one resource to reserve, e.g. cpu=4")
    caps = ", ".join(f"{n.name} cpu={n.cpu:g} memory={n.memory_mib}Mi gpu={n.gpu}" for n in nodes)
    if req.node is not None:
        node = next((n for n in nodes if n.name == req.node), None)
        if node is None:
            raise Invalid(f"node: no node named {req.node!r}; nodes: {caps}")
        if not _fits(node, q):
            raise Invalid(f"resources: do not fit node {req.node!r} ({caps})")
    elif not any(_fits(n, q) for n in nodes):
        raise Invalid(f"resources: no node is large enough ({caps}); reserve less")
    gid, uid = owner_ids(session, req.group, req.user)
    r = Reservation(
        id=f"rsv-{secrets.token_hex(6)}", group_id=gid, user_id=uid, resources=q,
        node=req.node, start=req.start or now, end=req.end, reason=req.reason,
        created_by=p.user, created_at=now,
    )  # fmt: skip
    session.add(r)
    session.flush()
    return r, req.group, req.user


def _query(p: Principal):
    q = (
        select(Reservation, Group.name, User.name)
        .outerjoin(Group, Reservation.group_id == Group.id)
        .outerjoin(User, Reservation.user_id == User.id)
    )
    if not p.admin:
        q = q.where(or_(Reservation.group_id == p.group_id, Reservation.user_id == p.user_id))
    return q


def list_reservations(
    session: Session, p: Principal, *, include_ended: bool = False, now: datetime | None = None
) -> list[ReservationRow]:
    """Reservations by start time; ended ones only with `include_ended`."""
    require_unscoped(p)
    q = _query(p).order_by(Reservation.start, Reservation.id)
    if not include_ended:
        q = q.where(Reservation.end > (now or utcnow()))
    return [(r, g, u) for r, g, u in session.execute(q)]


def delete_reservation(session: Session, p: Principal, rid: str) -> None:
    """Cancel a reservation (admin); its capacity is free at the next cycle."""
    require_admin(p)
    r = session.get(Reservation, rid)
    if r is None:
        raise NotFound(f"reservation {rid!r} not found")
    session.delete(r)
