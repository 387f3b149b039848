"""The workload lifecycle: states, allowed transitions, and what each sets. Pure, no I/O.

::

                 ┌──────────── cancel ───────────────┐
                 │                                    ▼
    pending ──► admitted ──► running ──► succeeded | failed | cancelled | timed_out
      ▲  │          │  │        │
      │  └─cancel─► │  └─► failed (launch error)
      │             │           │
      └── requeue ──┘◄── retry / preempt ──┘   (back to pending, queue time kept)

Fields by state:
  admitted_at   set on entering ``admitted`` (each attempt)
  started_at    set on the first entry into ``running`` (kept across retries)
  finished_at   set on entering a final state
  reason        always the reason of the latest transition

``transition`` mutates a workload-like object and returns the event to record, so a
transition can never happen without its event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = [
    "ALLOWED",
    "FINAL",
    "LIVE",
    "InvalidTransition",
    "State",
    "Transition",
    "can_transition",
    "transition",
]


class State(StrEnum):
    PENDING = "pending"
    ADMITTED = "admitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


FINAL: frozenset[State] = frozenset(
    {State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT}
)
LIVE: frozenset[State] = frozenset({State.PENDING, State.ADMITTED, State.RUNNING})

ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.ADMITTED, State.CANCELLED, State.FAILED}),
    State.ADMITTED: frozenset({State.RUNNING, State.PENDING, State.FAILED, State.CANCELLED}),
    State.RUNNING: frozenset(
        {State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT, State.PENDING}
    ),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
    State.TIMED_OUT: frozenset(),
}


class InvalidTransition(ValueError):
    """A transition the lifecycle does not allow; the message names both states."""


class _WorkloadLike(Protocol):
    state: str
    reason: str
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Transition:
    """The event describing one transition: ``type`` is the new state's name unless given."""

    type: str
    reason: str
    from_state: State
    to_state: State


def can_transition(current: str, target: str) -> bool:
    """Whether `current` -> `target` is allowed."""
    return State(target) in ALLOWED[State(current)]


def transition(
    w: _WorkloadLike, target: State, reason: str, now: datetime, event_type: str | None = None
) -> Transition:
    """Move `w` to `target`, setting the fields above; return the event to record.

    Raises InvalidTransition when the lifecycle forbids it (the caller maps it to 409).
    """
    current = State(w.state)
    if target not in ALLOWED[current]:
        raise InvalidTransition(f"cannot go from {current} to {target}")
    w.state = target.value
    w.reason = reason
    if target is State.ADMITTED:
        w.admitted_at = now
    elif target is State.RUNNING and w.started_at is None:
        w.started_at = now
    if target in FINAL:
        w.finished_at = now
    return Transition(event_type or target.value, reason, current, target)
