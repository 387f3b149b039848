"""/api/v1/nodes: capacity and use of the executor's nodes."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter
from sqlalchemy import select

from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import NodeOut, Quantity
from plinth.services.auth import require_unscoped
from plinth.services.control_loop import LIVE_REPLICA_STATES
from plinth.store.models import Replica

router = APIRouter(prefix="/api/v1/nodes", tags=["nodes"])


@router.get("", response_model=list[NodeOut])
def list_nodes(p: Caller, ctx: Ctx) -> list[NodeOut]:
    """Every node with its capacity and the resources its live replicas hold."""
    require_unscoped(p)
    used: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    with ctx.db.read() as s:
        for node, res in s.execute(
            select(Replica.node, Replica.resources).where(Replica.state.in_(LIVE_REPLICA_STATES))
        ):
            u = used[node]
            u[0] += float(res.get("cpu", 0))
            u[1] += int(res.get("memory", 0))
            u[2] += int(res.get("gpu", 0))
    out = []
    for n in ctx.loop.nodes:
        u = used[n.name]
        out.append(
            NodeOut(
                name=n.name,
                address=n.address,
                capacity=Quantity(cpu=n.cpu, memory=n.memory_mib, gpu=n.gpu),
                used=Quantity(cpu=round(u[0], 6), memory=int(u[1]), gpu=int(u[2])),
            )
        )
    return out
