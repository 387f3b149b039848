"""Refusals at submit that the scheduler would otherwise turn into a wait forever or
an unbounded queue: a job over its user's personal cap (it could never start), and a
user or group over its limit of pending workloads (``scheduler.max_pending_per_user``,
``scheduler.max_pending_per_group``).

A group's ``max_job`` and ``max_runtime`` are checked beside the spec's other fields in
``services.jobs``; the cluster's size in ``services.admission``.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from plinth.scheduler.resources import ZERO, Resources, over_limit
from plinth.services.errors import Invalid, TooMany
from plinth.services.lifecycle import State
from plinth.store.models import QuotaExpansion, User, Workload, utcnow

__all__ = ["check_pending_limits", "check_user_cap"]


def check_user_cap(session: Session, user_id: int, user: str, demand: Resources,
                   what: str = "roles: the job's") -> None:
    """Invalid (422) naming the cap when `demand` (the job's total) is above the user's
    personal cap in some resource, counting expansions of the user that have not ended
    (they could make it fit while they last)."""
    cap = session.scalar(select(User.cap).where(User.id == user_id))
    if not cap:
        return
    extra = ZERO
    for (add,) in session.execute(
        select(QuotaExpansion.add).where(QuotaExpansion.user_id == user_id,
                                         QuotaExpansion.end > utcnow())
    ):  # fmt: skip
        extra += Resources.from_dict(add)
    over = over_limit(demand, cap, extra)
    if over:
        raise Invalid(
            f"{what} total demand is over user {user!r}'s personal cap"
            f" ({'; '.join(over)}); it could never start: ask for less or ask an admin"
            " to raise the cap"
        )


def check_pending_limits(
    session: Session, user_id: int, user: str, group_id: int, group: str,
    per_user: int | None, per_group: int | None,
) -> None:
    """TooMany (429) naming the limit when the user or the group already has the most
    pending workloads the server allows (None: no limit)."""
    pending = Workload.state == State.PENDING.value
    if per_user is not None:
        n = session.scalar(
            select(func.count()).select_from(Workload).where(pending, Workload.user_id == user_id)
        ) or 0  # fmt: skip
        if n >= per_user:
            raise TooMany(
                f"user {user!r} has {n} pending workloads, the most allowed"
                f" (scheduler.max_pending_per_user = {per_user}); wait for some to start"
                " or cancel some"
            )
    if per_group is not None:
        n = session.scalar(
            select(func.count()).select_from(Workload).where(pending,
                                                             Workload.group_id == group_id)
        ) or 0  # fmt: skip
        if n >= per_group:
            raise TooMany(
                f"group {group!r} has {n} pending workloads, the most allowed"
                f" (scheduler.max_pending_per_group = {per_group}); wait for some to start"
                " or cancel some"
            )
