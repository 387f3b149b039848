"""The scheduler's input: nodes, quota groups, users, expansions, reservations, workloads.

All times are seconds on one clock chosen by the caller (the server uses UNIX
time); the scheduler never reads a clock itself, ``Snapshot.now`` is the
present. Values are frozen: a cycle changes only its own working copies, the
real state changes when the caller applies the decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from plinth.scheduler.resources import ZERO, Resources


@dataclass(frozen=True, slots=True)
class Node:
    """A machine that runs replicas. ``capacity`` is what workloads may request on it."""

    name: str
    capacity: Resources


@dataclass(frozen=True, slots=True)
class Group:
    """A quota group (a team).

    ``nominal``: the quota the group is entitled to.
    ``lend_limit``: how much of its nominal quota it may lend to other groups;
    the rest (``nominal - lend_limit``) is guaranteed and never used by others.
    ``None`` lends all of it.
    ``borrow_limit``: how much beyond its nominal it may use, taken from other
    groups' idle lendable quota. ``None`` is unlimited; ``Resources()`` forbids
    borrowing.
    ``max_job``, ``max_runtime_s``, ``max_workloads_per_user``: admin caps.
    """

    name: str
    nominal: Resources
    lend_limit: Resources | None = None
    borrow_limit: Resources | None = None
    max_job: Resources | None = None
    max_runtime_s: float | None = None
    max_workloads_per_user: int | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A user of a group; ``cap`` is an optional personal quota inside the group."""

    name: str
    group: str
    cap: Resources | None = None


@dataclass(frozen=True, slots=True)
class Expansion:
    """Extra quota for a group or a user (exactly one is set) during ``[start, end)``."""

    add: Resources
    start: float
    end: float
    group: str | None = None
    user: str | None = None
    reason: str = ""
    granted_by: str = ""

    def active(self, now: float) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True, slots=True)
class Reservation:
    """Capacity kept free for a group or a user (exactly one is set) during ``[start, end)``.

    With ``node`` the capacity is held on that node; otherwise the scheduler
    picks a node each cycle. Work that ends before ``start`` may use it; from
    ``start`` on, only the owner's workloads may.
    """

    id: str
    resources: Resources
    start: float
    end: float
    group: str | None = None
    user: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Role:
    """One role of a workload: ``replicas`` copies, each requesting ``resources``."""

    name: str
    replicas: int
    resources: Resources


@dataclass(frozen=True, slots=True)
class Workload:
    """A job, notebook or deployment: a gang of roles.

    ``queue_time``: when it first entered the queue (kept across preemption;
    aging counts from it). ``seq``: submission order, the last tie-breaker.
    ``max_runtime_s``: declared and enforced limit, in seconds.
    Running workloads also carry ``start_time`` and ``placements``
    (role -> node name per replica); ``preempting`` marks one that has been
    told to stop and still holds its resources. ``reservation`` names the
    reservation a pending workload is booked into, or that a running one uses.
    """

    id: str
    group: str
    user: str
    roles: tuple[Role, ...]
    max_runtime_s: float
    queue_time: float
    kind: str = "job"
    priority: str = "normal"
    seq: int = 0
    start_time: float | None = None
    placements: Mapping[str, tuple[str, ...]] | None = None
    reservation: str | None = None
    preempting: bool = False
    # Derived once at construction, so a cycle never recomputes them.
    total: Resources = field(init=False, repr=False, compare=False)
    total_t: tuple[float, float, float] = field(init=False, repr=False, compare=False)
    replicas_t: tuple[tuple[float, float, float], ...] = field(
        init=False, repr=False, compare=False
    )
    largest_t: tuple[float, float, float] = field(init=False, repr=False, compare=False)
    uniform: bool = field(init=False, repr=False, compare=False)
    # (queue_time, max_runtime_s, seq, total cpu/mem/gpu, largest replica
    # cpu/mem/gpu): one tuple, so a cycle builds its arrays in one pass.
    row: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        total = ZERO
        reps = []
        for r in self.roles:
            total = total + r.resources * r.replicas
            reps.extend([r.resources.as_tuple()] * r.replicas)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "total_t", total.as_tuple())
        object.__setattr__(self, "replicas_t", tuple(reps))
        largest = (
            (max(t[0] for t in reps), max(t[1] for t in reps), max(t[2] for t in reps))
            if reps
            else (0.0, 0.0, 0.0)
        )
        object.__setattr__(self, "largest_t", largest)
        # All replicas alike (most workloads): the largest replica is a replica.
        object.__setattr__(self, "uniform", len(set(reps)) <= 1)
        object.__setattr__(self, "row", (float(self.queue_time), float(self.max_runtime_s),
                                         float(self.seq), *total.as_tuple(), *largest))

    @property
    def end_time(self) -> float | None:
        """When a running workload reaches its ``max_runtime`` (seconds), else None."""
        return None if self.start_time is None else self.start_time + self.max_runtime_s

    def node_usage(self) -> dict[str, tuple[float, float, float]]:
        """Resources this running workload holds on each node."""
        out: dict[str, tuple[float, float, float]] = {}
        if not self.placements:
            return out
        by_role = {r.name: r.resources.as_tuple() for r in self.roles}
        for role, nodes in self.placements.items():
            c, m, g = by_role.get(role, (0.0, 0.0, 0.0))
            for n in nodes:
                o = out.get(n)
                out[n] = (c, m, g) if o is None else (o[0] + c, o[1] + m, o[2] + g)
        return out


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """``resources`` held by ``group`` during ``[start, end)``; input to fair share."""

    group: str
    start: float
    end: float
    resources: Resources


@dataclass(frozen=True, slots=True)
class Victim:
    """A workload preempted by a reclaim, and what it held on each node when it was
    told to stop (node name -> resources): the capacity its exit frees."""

    id: str
    usage: Mapping[str, Resources]

    @property
    def total(self) -> Resources:
        out = ZERO
        for r in self.usage.values():
            out = out + r
        return out


@dataclass(frozen=True, slots=True)
class ReclaimHold:
    """Capacity freed by a reclaim's victims, kept for the claimant that caused it.

    ``claimant``: the pending workload the victims were preempted for, of
    ``group``. ``since``: when the (latest) preemption was decided, seconds.
    ``plan``: where the claimant fits once its victims are gone (node name ->
    what its replicas take there). While the claimant is pending, the plan's
    capacity is kept free for it -- on each node, the plan minus what victims
    still stopping hold there -- and counted against the claimant's group
    quota, so that no one else, a victim back in the queue least of all,
    takes it.
    A victim counts as exited when no running workload with ``preempting`` has
    its id or ``<id>@<attempt>`` (an older attempt still stopping; see
    ``plinth.services.scheduling``). The hold ends when the claimant is
    admitted or leaves the queue, or ``SchedulerConfig.reclaim_hold_s`` after
    ``since`` (the claimant gave up waiting for it).
    """

    claimant: str
    group: str
    victims: tuple[Victim, ...]
    since: float
    plan: Mapping[str, Resources] = field(default_factory=dict)

    @property
    def victim_ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.victims)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scheduling cycle looks at. ``now`` in seconds."""

    now: float
    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]
    users: tuple[User, ...] = ()
    expansions: tuple[Expansion, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    running: tuple[Workload, ...] = ()
    pending: tuple[Workload, ...] = ()
    usage_history: tuple[UsageRecord, ...] = ()
    reclaim_holds: tuple[ReclaimHold, ...] = ()
