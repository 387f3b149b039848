"""The workload state machine, without processes or a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from plinth.services.lifecycle import FINAL, InvalidTransition, State, can_transition, transition

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class W:
    state: str = "pending"
    reason: str = ""
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@pytest.mark.parametrize(
    ("start", "target", "ok"),
    [
        ("pending", State.ADMITTED, True),
        ("pending", State.CANCELLED, True),
        ("pending", State.RUNNING, False),
        ("admitted", State.RUNNING, True),
        ("admitted", State.PENDING, True),  # requeued after a restart
        ("running", State.SUCCEEDED, True),
        ("running", State.TIMED_OUT, True),
        ("running", State.PENDING, True),  # retry
        ("running", State.ADMITTED, False),
        ("succeeded", State.RUNNING, False),
        ("cancelled", State.PENDING, False),
        ("timed_out", State.FAILED, False),
    ],
)
def test_allowed_transitions(start: str, target: State, ok: bool) -> None:
    assert can_transition(start, target) is ok
    w = W(state=start)
    if ok:
        t = transition(w, target, "why", NOW)
        assert (w.state, w.reason, t.from_state, t.to_state) == (target, "why", start, target)
    else:
        with pytest.raises(InvalidTransition, match=f"from {start} to {target.value}"):
            transition(w, target, "why", NOW)
        assert w.state == start


def test_fields_set_by_state() -> None:
    w = W()
    transition(w, State.ADMITTED, "a", NOW)
    assert w.admitted_at == NOW and w.started_at is None
    transition(w, State.RUNNING, "r", NOW)
    assert w.started_at == NOW and w.finished_at is None
    later = datetime(2026, 1, 2, tzinfo=UTC)
    t = transition(w, State.PENDING, "retry", later, event_type="retrying")
    assert t.type == "retrying"
    transition(w, State.ADMITTED, "a", later)
    transition(w, State.RUNNING, "r", later)
    assert w.started_at == NOW  # the first start is kept across retries
    transition(w, State.FAILED, "f", later)
    assert w.finished_at == later


def test_final_states_have_no_way_out() -> None:
    for s in FINAL:
        for t in State:
            assert not can_transition(s, t)
