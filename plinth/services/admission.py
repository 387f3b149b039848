"""The admission policy for now: FIFO over pending workloads, a gang is admitted when
every replica fits the free capacity, placed first-fit. Pure: a snapshot in, decisions
out; no I/O, no clock.

The quota scheduler (plinth.scheduler) replaces ``decide`` without changing its callers:
the control loop builds a ``Snapshot``, calls ``decide``, and applies the ``Decisions``
in one transaction.

A pending workload that does not fit is skipped and later ones may still start (so a
large gang can wait behind a stream of small ones; the quota scheduler's backfill and
aging address that).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Admission",
    "Decisions",
    "NodeFree",
    "PendingWorkload",
    "Placement",
    "ReplicaDemand",
    "Snapshot",
    "decide",
    "unplaceable_reason",
]

_EPS = 1e-9  # cpu is fractional; tolerate float rounding in sums


@dataclass(frozen=True)
class NodeFree:
    """Free capacity of one node: cores, MiB, and the indices of its free GPUs."""

    name: str
    address: str
    cpu: float
    memory: int
    gpus: tuple[int, ...]


@dataclass(frozen=True)
class ReplicaDemand:
    role: str
    replica: int
    cpu: float
    memory: int
    gpu: int

    def describe(self) -> str:
        return (
            f"{self.role}-{self.replica} (cpu={self.cpu:g}, memory={self.memory}Mi, gpu={self.gpu})"
        )


@dataclass(frozen=True)
class PendingWorkload:
    id: str
    replicas: tuple[ReplicaDemand, ...]


@dataclass(frozen=True)
class Snapshot:
    """Free capacity now and the pending workloads in queue order (first = longest waiting)."""

    nodes: tuple[NodeFree, ...]
    pending: tuple[PendingWorkload, ...]


@dataclass(frozen=True)
class Placement:
    role: str
    replica: int
    node: str
    address: str
    gpus: tuple[int, ...]


@dataclass(frozen=True)
class Admission:
    workload_id: str
    placements: tuple[Placement, ...]


@dataclass
class Decisions:
    admissions: list[Admission] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # workload id -> why it waits


@dataclass
class _Free:
    name: str
    address: str
    cpu: float
    memory: int
    gpus: list[int]


def _place(
    free: list[_Free], replicas: tuple[ReplicaDemand, ...]
) -> tuple[list[Placement] | None, ReplicaDemand | None]:
    """First-fit every replica on a copy of `free`; commit to `free` only if all fit."""
    trial = [_Free(n.name, n.address, n.cpu, n.memory, list(n.gpus)) for n in free]
    out: list[Placement] = []
    for r in replicas:
        for n in trial:
            if n.cpu + _EPS >= r.cpu and n.memory >= r.memory and len(n.gpus) >= r.gpu:
                n.cpu -= r.cpu
                n.memory -= r.memory
                gpus, n.gpus = tuple(n.gpus[: r.gpu]), n.gpus[r.gpu :]
                out.append(Placement(r.role, r.replica, n.name, n.address, gpus))
                break
        else:
            return None, r
    free[:] = trial
    return out, None


def decide(snapshot: Snapshot) -> Decisions:
    """Admit, in queue order, every pending workload whose whole gang fits what is left."""
    free = [_Free(n.name, n.address, n.cpu, n.memory, list(n.gpus)) for n in snapshot.nodes]
    d = Decisions()
    for w in snapshot.pending:
        placements, blocker = _place(free, w.replicas)
        if placements is None:
            assert blocker is not None
            avail = ", ".join(
                f"{n.name} cpu={max(n.cpu, 0):g} memory={n.memory}Mi gpu={len(n.gpus)}"
                for n in free
            )
            d.waiting[w.id] = (
                f"waiting for capacity: replica {blocker.describe()} does not fit "
                f"with the rest of its gang; free now: {avail}"
            )
        else:
            d.admissions.append(Admission(w.id, tuple(placements)))
    return d


def unplaceable_reason(
    nodes: tuple[NodeFree, ...], replicas: tuple[ReplicaDemand, ...]
) -> str | None:
    """Why this gang could never start, even on empty nodes; None when it could."""
    placements, blocker = _place(
        [_Free(n.name, n.address, n.cpu, n.memory, list(n.gpus)) for n in nodes], replicas
    )
    if placements is not None:
        return None
    assert blocker is not None
    caps = ", ".join(f"{n.name} cpu={n.cpu:g} memory={n.memory}Mi gpu={len(n.gpus)}" for n in nodes)
    return (
        f"the job can never start: replica {blocker.describe()} does not fit with the rest of "
        f"its gang even on empty nodes (capacity: {caps}); ask for fewer resources or replicas"
    )
