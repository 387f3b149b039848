"""Recording and reading workload events (every transition, with its reason)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from plinth.services.lifecycle import Transition
from plinth.store.models import Event, utcnow

__all__ = ["list_events", "record", "record_transition"]


def record(
    session: Session,
    workload_id: str,
    type: str,
    reason: str,
    time: datetime | None = None,
    **data: Any,
) -> Event:
    """Add an event to the session (committed with the caller's transaction)."""
    ev = Event(
        workload_id=workload_id, type=type, reason=reason, time=time or utcnow(), data=data or None
    )
    session.add(ev)
    return ev


def record_transition(
    session: Session, workload_id: str, t: Transition, time: datetime, **data: Any
) -> Event:
    """Record the event of a lifecycle transition."""
    return record(
        session,
        workload_id,
        t.type,
        t.reason,
        time,
        from_state=t.from_state.value,
        to_state=t.to_state.value,
        **data,
    )


def list_events(session: Session, workload_id: str) -> list[Event]:
    """Events of a workload, oldest first."""
    return list(
        session.scalars(select(Event).where(Event.workload_id == workload_id).order_by(Event.id))
    )
