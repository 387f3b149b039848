"""What a cycle returns: admissions, preemptions, and for every pending workload
its position, outcome, score breakdown and the reason it waits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from plinth.scheduler.model import ReclaimHold


class Outcome(IntEnum):
    """Result for one pending workload, ordered as in Kueue: ``NO_FIT < PREEMPT < FIT``.

    ``NO_FIT``: it waits (the reason says why). ``PREEMPT``: it waits for the
    preemptions issued on its behalf to finish. ``FIT``: admitted this cycle.
    """

    NO_FIT = 0
    PREEMPT = 1
    FIT = 2


@dataclass(frozen=True, slots=True)
class ScoreBreakdown:
    """Each factor in [0, 1] as used, its weight, and the weighted total."""

    factors: Mapping[str, float]
    weights: Mapping[str, float]
    total: float

    def weighted(self) -> dict[str, float]:
        return {k: self.factors[k] * self.weights[k] for k in self.factors}


@dataclass(frozen=True, slots=True)
class Admission:
    """Start ``workload_id`` with ``placement``: role -> node name per replica.

    ``borrows``: it uses quota lent by other groups (it may be reclaimed).
    ``backfill``: it starts ahead of a higher-ranked blocked workload because
    it ends before that one can start. ``reservation``: the reservation whose
    held capacity it uses, if any.
    """

    workload_id: str
    placement: Mapping[str, tuple[str, ...]]
    borrows: bool = False
    backfill: bool = False
    reservation: str | None = None


@dataclass(frozen=True, slots=True)
class Preemption:
    """Stop ``workload_id`` (SIGTERM, then the grace period) so ``for_workload`` can start."""

    workload_id: str
    for_workload: str
    reason: str


@dataclass
class Decisions:
    """The result of one cycle. Nothing here has happened yet: the caller applies it.

    ``queue``: pending workload ids in the order the cycle considered them.
    ``outcomes``: pending id -> Outcome. ``reasons``: pending id -> readable
    reason, for every workload that was not admitted. ``phases``: cycle phase
    name -> duration in seconds. ``score(id)`` gives a score breakdown.
    ``holds``: reclaim holds to record (new, or replacing the claimant's
    earlier one with more victims). ``released_holds``: claimant id -> why its
    hold ends (admitted, left the queue, expired).
    """

    admissions: list[Admission] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    holds: list[ReclaimHold] = field(default_factory=list)
    released_holds: dict[str, str] = field(default_factory=dict)
    # Breakdowns are built on demand: a cycle over 50,000 pending workloads
    # should not allocate 50,000 objects that nobody reads.
    _score_of: Callable[[str], ScoreBreakdown] | None = field(default=None, repr=False)

    def score(self, workload_id: str) -> ScoreBreakdown:
        """Score breakdown of a pending workload; KeyError if it was not pending."""
        if self._score_of is None:
            raise KeyError(workload_id)
        return self._score_of(workload_id)

    def position(self, workload_id: str) -> int:
        """1-based position of a pending workload in the cycle's order."""
        return self.queue.index(workload_id) + 1

    @property
    def admitted_ids(self) -> list[str]:
        return [a.workload_id for a in self.admissions]
