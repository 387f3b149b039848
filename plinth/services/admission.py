"""Submit-time feasibility: could a gang ever start on the configured nodes, even empty?

Admission itself is the quota scheduler's (``plinth.scheduler.schedule``, wired in by
``services.control_loop`` and ``services.scheduling``); this module only answers, at
submit, whether a job's replicas can be placed at all, so that a job that could never
start is refused with a 422 naming the replica and the capacity instead of waiting
forever. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from plinth import scheduler as core
from plinth.scheduler.placement import NodePool

__all__ = ["NodeFree", "ReplicaDemand", "unplaceable_reason"]

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
class Placement:
    role: str
    replica: int
    node: str
    address: str
    gpus: tuple[int, ...]


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


def unplaceable_reason(
    nodes: tuple[NodeFree, ...],
    replicas: tuple[ReplicaDemand, ...],
    policy: core.SchedulerConfig | None = None,
) -> str | None:
    """Why this gang could never start, even on empty nodes; None when it could.

    With the scheduler's `policy`, its placement rules count too: unless
    ``cpu_work_on_gpu_nodes`` (then CPU-only work may use a GPU node's CPU once its GPUs
    are taken), CPU-only replicas never go on GPU nodes where there are CPU-only nodes,
    so the scheduler's own ``NodePool`` must place the gang on the empty nodes."""
    placements, blocker = _place(
        [_Free(n.name, n.address, n.cpu, n.memory, list(n.gpus)) for n in nodes], replicas
    )
    caps = ", ".join(f"{n.name} cpu={n.cpu:g} memory={n.memory}Mi gpu={len(n.gpus)}" for n in nodes)
    if placements is None:
        assert blocker is not None
        return (
            f"the job can never start: replica {blocker.describe()} does not fit with the rest "
            f"of its gang even on empty nodes (capacity: {caps}); ask for fewer resources or "
            "replicas"
        )
    if policy is None or policy.cpu_work_on_gpu_nodes or _scheduler_places(nodes, replicas, policy):
        return None
    return (
        "the job can never start: its CPU-only replicas fit only on GPU nodes, where this "
        "server's scheduler does not put CPU-only work (scheduler.cpu_work_on_gpu_nodes is "
        f"off), and not on the CPU-only nodes (capacity: {caps}); ask for fewer resources "
        "per replica, or ask an admin to allow CPU work on GPU nodes"
    )


def _scheduler_places(
    nodes: tuple[NodeFree, ...], replicas: tuple[ReplicaDemand, ...], policy: core.SchedulerConfig
) -> bool:
    """Whether the scheduler's placement puts the whole gang on the empty nodes."""
    pool = NodePool(
        [
            core.Node(n.name, core.Resources(float(n.cpu), int(n.memory), len(n.gpus)))
            for n in nodes
        ],
        (),
        policy=policy.placement,
    )
    roles: dict[str, list[ReplicaDemand]] = {}
    for r in replicas:
        roles.setdefault(r.role, []).append(r)
    gang = core.Workload(
        id="submit-check", group="", user="", max_runtime_s=1.0, queue_time=0.0,
        roles=tuple(
            core.Role(name, len(rs), core.Resources(float(rs[0].cpu), int(rs[0].memory),
                                                    int(rs[0].gpu)))
            for name, rs in roles.items()
        ),
    )  # fmt: skip
    return pool.place(gang, memo=False) is not None
