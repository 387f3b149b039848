"""Submit-time feasibility: could a gang ever start on the configured nodes, even empty?

Admission itself is the quota scheduler's (``plinth.scheduler.schedule``, wired in by
``services.control_loop`` and ``services.scheduling``); this module only answers, at
submit, whether a job's replicas can be placed at all, so that a job that could never
start is refused with a 422 naming the replica and the capacity instead of waiting
forever. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plinth import scheduler as core
from plinth.scheduler.resources import Resources

__all__ = ["NodeFree", "ReplicaDemand", "unplaceable_reason"]


@dataclass(frozen=True)
class NodeFree:
    """Free capacity of one node: cores, MiB, and the indices of its free GPUs."""

    name: str
    address: str
    cpu: float
    memory: int
    gpus: tuple[int, ...]

    @property
    def capacity(self) -> Resources:
        return Resources(self.cpu, self.memory, len(self.gpus))


@dataclass(frozen=True)
class ReplicaDemand:
    role: str
    replica: int
    cpu: float
    memory: int
    gpu: int

    @property
    def resources(self) -> Resources:
        """What one replica asks for."""
        return Resources(self.cpu, self.memory, self.gpu)

    def describe(self) -> str:
        return (
            f"{self.role}-{self.replica} (cpu={self.cpu:g}, memory={self.memory}Mi, gpu={self.gpu})"
        )


@dataclass
class _Free:
    left: Resources
    has_gpus: bool  # a GPU node (for the CPU-only rule), whatever is left free


def _place(
    nodes: tuple[NodeFree, ...],
    replicas: tuple[ReplicaDemand, ...],
    allowed: Callable[[_Free, ReplicaDemand], bool] | None = None,
) -> ReplicaDemand | None:
    """First-fit every replica, in order, on the empty `nodes`: None when all fit, else
    the first that did not. `allowed(node, replica)`: may the replica go there at all."""
    free = [_Free(n.capacity, bool(n.gpus)) for n in nodes]
    for r in replicas:
        need = r.resources
        for n in free:
            if allowed is not None and not allowed(n, r):
                continue
            if need.fits_in(n.left):
                n.left = n.left - need
                break
        else:
            return r
    return None


def _fits(
    nodes: tuple[NodeFree, ...],
    replicas: tuple[ReplicaDemand, ...],
    allowed: Callable[[_Free, ReplicaDemand], bool] | None = None,
) -> ReplicaDemand | None:
    """None when the gang fits the empty nodes, else the replica that did not fit.

    Packing a gang is bin packing: first-fit is tried in the given order and largest
    first, and the gang counts as placeable when either succeeds, so that a job the
    scheduler can start is not refused for a heuristic's miss."""
    decreasing = tuple(sorted(replicas, key=lambda r: (r.gpu, r.cpu, r.memory), reverse=True))
    blocker = _place(nodes, replicas, allowed)
    if blocker is None or _place(nodes, decreasing, allowed) is None:
        return None
    return blocker


def unplaceable_reason(
    nodes: tuple[NodeFree, ...],
    replicas: tuple[ReplicaDemand, ...],
    policy: core.SchedulerConfig | None = None,
) -> str | None:
    """Why this gang could never start, even on empty nodes; None when it could.

    With the scheduler's `policy`, its placement rule counts too: unless
    ``cpu_work_on_gpu_nodes``, CPU-only replicas never go on GPU nodes where there are
    CPU-only nodes (with it, they may once a GPU node's GPUs are taken)."""
    caps = ", ".join(f"{n.name} cpu={n.cpu:g} memory={n.memory}Mi gpu={len(n.gpus)}" for n in nodes)
    blocker = _fits(nodes, replicas)
    if blocker is not None:
        return (
            f"the job can never start: replica {blocker.describe()} does not fit with the rest "
            f"of its gang even on empty nodes (capacity: {caps}); ask for fewer resources or "
            "replicas"
        )
    mixed = any(n.gpus for n in nodes) and any(not n.gpus for n in nodes)
    if policy is None or policy.cpu_work_on_gpu_nodes or not mixed:
        return None
    blocker = _fits(nodes, replicas, allowed=lambda n, r: r.gpu > 0 or not n.has_gpus)
    if blocker is None:
        return None
    return (
        f"the job can never start: CPU-only replica {blocker.describe()} fits only on GPU "
        "nodes, where this server's scheduler does not put CPU-only work "
        f"(scheduler.cpu_work_on_gpu_nodes is off; capacity: {caps}); ask for fewer "
        "resources per replica, or ask an admin to allow CPU work on GPU nodes"
    )
