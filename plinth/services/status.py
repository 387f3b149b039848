"""Read-side figures of the cluster: node use, workload counts, resources in use, and
each group's quota picture -- for ``/api/v1/nodes`` and ``/metrics``.

Reads only, in the caller's transaction; resource amounts are ``Resources`` (cores,
MiB, devices).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from plinth import scheduler as core
from plinth.executors.base import NodeCapacity
from plinth.scheduler.resources import Resources
from plinth.services.scheduling import LIVE_REPLICA_STATES, build_snapshot
from plinth.store.models import Replica, Workload, utcnow

__all__ = ["NodeUse", "group_quotas", "node_use", "resources_in_use", "workload_counts"]


@dataclass(frozen=True)
class NodeUse:
    """A node, its total capacity and what its live replicas hold."""

    node: NodeCapacity
    used: Resources


def node_use(s: Session, nodes: Sequence[NodeCapacity]) -> list[NodeUse]:
    """Every node with the resources its live (launching or running) replicas hold."""
    used: dict[str, Resources] = defaultdict(Resources)
    for node, res in s.execute(
        select(Replica.node, Replica.resources).where(Replica.state.in_(LIVE_REPLICA_STATES))
    ):
        used[node] = used[node] + Resources.from_dict(res)
    return [NodeUse(n, used[n.name]) for n in nodes]


def resources_in_use(s: Session) -> Resources:
    """What every live replica holds, summed."""
    total = Resources()
    for res in s.scalars(
        select(Replica.resources).where(Replica.state.in_(LIVE_REPLICA_STATES))
    ):
        total = total + Resources.from_dict(res)
    return total


def workload_counts(s: Session) -> dict[str, int]:
    """Workloads per state (states with none are absent)."""
    return dict(s.execute(select(Workload.state, func.count()).group_by(Workload.state)).all())


def group_quotas(s: Session, nodes: Sequence[NodeCapacity]) -> list[core.GroupStatus]:
    """Each group's quota picture now: effective nominal, expansion, used, borrowed,
    lent (what ``plinth group list`` shows), from a snapshot without pending work."""
    info = build_snapshot(s, nodes, utcnow(), pending_limit=0)
    return core.group_status(info.snapshot)
