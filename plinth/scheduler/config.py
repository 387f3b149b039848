"""Scheduler configuration: score weights, normalisation references, policy switches.

Every number here is documented in docs/scheduling.md. Times in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType


class Ordering(str, Enum):
    """How pending workloads are ordered in a cycle."""

    SCORE = "score"  # weighted multi-factor score (Plinth)
    FIFO = "fifo"  # queue time only (Kueue's BestEffortFIFO)


class PlacementPolicy(str, Enum):
    """How replicas are put on nodes."""

    BEST_FIT = "best_fit"  # tightest node first, keeps large holes for large jobs
    FIRST_FIT = "first_fit"  # first node in name order that fits (baseline)


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the score factors; each factor is in [0, 1].

    The default ``aging`` weight equals the sum of all others, so a workload
    that has waited ``aging_saturation_s`` ranks ahead of every workload that
    has just arrived, whatever their other factors: no wait is unbounded.
    """

    aging: float = 4.0
    runtime: float = 1.0
    size: float = 0.5
    fit: float = 0.5
    fair_share: float = 1.0
    priority: float = 1.0


_DEFAULT_PRIORITIES = MappingProxyType({"low": 0.0, "normal": 0.5, "high": 1.0})


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Weights, limits and policy switches of the scheduler.

    ``aging_saturation_s``: queue time at which the aging factor reaches 1.
    ``runtime_reference_s``: a ``max_runtime`` this long (or longer) scores 0 on
    the runtime factor; one minute scores about 1 (log scale in between).
    ``size_reference``: dominant share of the cluster at which the size
    factor reaches 0 (linear from 1 at zero demand).
    ``fair_share_half_life_s``: half-life of past usage in the fair-share factor.
    ``priority_classes``: class name -> factor in [0, 1]; unknown classes get
    ``default_priority``.
    ``reclaim_grace_s``: SIGTERM-to-SIGKILL grace the caller gives preempted
    workloads (the core only decides who).
    ``max_admissions_per_cycle``: stop admitting after this many (None: no limit).
    ``borrow_max_runtime_s``: only work declaring at most this ``max_runtime``
    may borrow (None: any). Borrowed capacity can be reclaimed at any time,
    and a long run preempted late loses the most work.
    ``cpu_work_on_gpu_nodes``: False (default) keeps CPU-only replicas off GPU
    nodes, like a taint, unless the cluster has no CPU-only node at all (a
    workstation that declares GPUs), where they may go anywhere. True lets
    them use GPU nodes when CPU nodes are full, but only the cpu and memory a
    node has beyond what its free GPUs need (at the node's own cpu and memory
    per GPU), so they never strand a free GPU.
    ``reclaim_after_s``: a workload inside its group's nominal quota triggers
    reclaim only once it has waited this long (since its ``queue_time``);
    until then it waits for borrowers to end by themselves, as YARN's fair
    scheduler waits its preemption timeout. Preempted work without a
    checkpoint is lost, and many borrowers end within the hour; 0 (default):
    reclaim at once.
    ``reclaim_least_lost_first``: reclaim victims are ordered by the work a
    preemption throws away (dominant share x time run so far), the priority
    class only breaking ties (False, default: lowest priority class first,
    then least work lost).
    ``reclaim_hold_s``: the longest the capacity freed by a reclaim's victims
    is held for its claimant (see ``ReclaimHold``) after the preemption was
    decided; past it the claimant counts as having given up and the capacity
    goes back to everyone. Victims stop within ``reclaim_grace_s``, so the
    default (600 s) only matters for a claimant blocked by something else.
    ``queue_heads_per_group``: how many pending workloads of each group (the
    first in queue order) the server gives one cycle, so that no group's
    backlog hides another's queue heads (fair scanning); the core itself
    schedules whatever the snapshot holds.
    ``fair_borrowing``: in the borrowing pass, serve the groups that use least
    of their own nominal quota first (False: plain cycle order, as Kueue).
    ``ordering``, ``borrowing``, ``reclaim``, ``backfill``, ``placement``:
    policy switches; the defaults are Plinth's policy, the simulation turns
    them off to model FIFO and Kueue-like baselines.
    """

    weights: Weights = field(default_factory=Weights)
    aging_saturation_s: float = 6 * 3600.0
    runtime_reference_s: float = 24 * 3600.0
    size_reference: float = 0.05
    fair_share_half_life_s: float = 24 * 3600.0
    priority_classes: Mapping[str, float] = field(default_factory=lambda: _DEFAULT_PRIORITIES)
    default_priority: float = 0.5
    reclaim_grace_s: float = 30.0
    reclaim_after_s: float = 0.0
    reclaim_least_lost_first: bool = False
    reclaim_hold_s: float = 600.0
    queue_heads_per_group: int = 1000
    max_admissions_per_cycle: int | None = None
    borrow_max_runtime_s: float | None = None
    cpu_work_on_gpu_nodes: bool = False
    ordering: Ordering = Ordering.SCORE
    borrowing: bool = True
    fair_borrowing: bool = True
    reclaim: bool = True
    backfill: bool = True
    placement: PlacementPolicy = PlacementPolicy.BEST_FIT

    def __post_init__(self) -> None:
        # Fail where the configuration enters, with what to fix.
        if self.aging_saturation_s <= 0:
            raise ValueError("aging_saturation_s must be > 0 seconds")
        if self.runtime_reference_s <= 60:
            raise ValueError("runtime_reference_s must be > 60 seconds")
        if not 0 < self.size_reference <= 1:
            raise ValueError("size_reference must be in (0, 1]")
        if self.fair_share_half_life_s <= 0:
            raise ValueError("fair_share_half_life_s must be > 0 seconds")
        for name, v in self.priority_classes.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"priority class {name!r}: value {v} must be in [0, 1]")
        for name in Weights.__slots__:
            if getattr(self.weights, name) < 0:
                raise ValueError(f"weight {name} must be >= 0")
        if self.reclaim_after_s < 0:
            raise ValueError("reclaim_after_s must be >= 0 seconds")
        if not 1 <= self.queue_heads_per_group <= 1_000_000:
            raise ValueError("queue_heads_per_group must be between 1 and 1000000")
        if self.reclaim_hold_s <= 0:
            raise ValueError("reclaim_hold_s must be > 0 seconds")
        if self.max_admissions_per_cycle is not None and self.max_admissions_per_cycle < 1:
            raise ValueError("max_admissions_per_cycle must be >= 1 or None")


def config_from_dict(values: Mapping[str, object]) -> SchedulerConfig:
    """A :class:`SchedulerConfig` from plain values (the server's YAML section).

    Keys are the field names; ``weights`` is a mapping of factor -> weight;
    ``ordering`` and ``placement`` take their string values. Durations must
    already be seconds. Unknown keys raise ``ValueError`` naming the key and
    the known ones.
    """
    known = set(SchedulerConfig.__slots__)
    kwargs: dict[str, object] = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown scheduler setting {key!r}; known: {', '.join(sorted(known))}")
        if key == "weights":
            if not isinstance(value, Mapping):
                raise ValueError("scheduler weights must be a mapping of factor -> weight")
            bad = set(value) - set(Weights.__slots__)
            if bad:
                raise ValueError(f"unknown score weight {min(bad)!r};"
                                 f" known: {', '.join(Weights.__slots__)}")
            value = Weights(**{k: float(v) for k, v in value.items()})  # type: ignore[arg-type]
        elif key == "ordering":
            value = Ordering(value)
        elif key == "placement":
            value = PlacementPolicy(value)
        kwargs[key] = value
    return SchedulerConfig(**kwargs)  # type: ignore[arg-type]
