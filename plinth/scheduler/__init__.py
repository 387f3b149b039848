"""Plinth's quota scheduler: a pure function from a snapshot to decisions.

The server builds a :class:`Snapshot` from its database (nodes, groups, users,
expansions, reservations, running and pending workloads, usage history,
``now``), calls :func:`schedule`, and applies the returned
:class:`Decisions` (admissions with node placements, preemptions) in one
transaction. :func:`explain` gives the text of ``plinth job explain``;
:func:`group_status` the numbers of ``plinth group list``.

Nothing here reads a clock, touches a database or does I/O. See
docs/scheduling.md for the policy.
"""

from __future__ import annotations

from plinth.scheduler.config import (
    Ordering,
    PlacementPolicy,
    SchedulerConfig,
    Weights,
    config_from_dict,
)
from plinth.scheduler.cycle import PHASES, schedule
from plinth.scheduler.explain import explain
from plinth.scheduler.model import (
    Expansion,
    Group,
    Node,
    ReclaimHold,
    Reservation,
    Role,
    Snapshot,
    UsageRecord,
    User,
    Victim,
    Workload,
)
from plinth.scheduler.outcomes import Admission, Decisions, Outcome, Preemption, ScoreBreakdown
from plinth.scheduler.quota import GroupStatus, QuotaLedger
from plinth.scheduler.resources import Resources


def group_status(snapshot: Snapshot) -> list[GroupStatus]:
    """Per group at ``snapshot.now``: effective nominal, expansion, used, borrowed,
    idle lendable and guaranteed quota (what ``plinth group list`` shows)."""
    ledger = QuotaLedger(snapshot)
    return [ledger.status(g) for g in ledger.groups]


def user_usage(snapshot: Snapshot) -> dict[str, Resources]:
    """Resources used by each user's running workloads."""
    ledger = QuotaLedger(snapshot)
    return {u: Resources.from_tuple(v) for u, v in ledger.user_usage.items()}


__all__ = [
    "PHASES",
    "Admission",
    "Decisions",
    "Expansion",
    "Group",
    "GroupStatus",
    "Node",
    "Ordering",
    "Outcome",
    "PlacementPolicy",
    "Preemption",
    "ReclaimHold",
    "Reservation",
    "Resources",
    "Role",
    "SchedulerConfig",
    "ScoreBreakdown",
    "Snapshot",
    "UsageRecord",
    "User",
    "Victim",
    "Weights",
    "Workload",
    "config_from_dict",
    "explain",
    "group_status",
    "schedule",
    "user_usage",
]
