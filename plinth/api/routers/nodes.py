"""/api/v1/nodes: capacity and use of the executor's nodes."""

from __future__ import annotations

from fastapi import APIRouter

from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import NodeOut, Quantity
from plinth.services.auth import require_unscoped
from plinth.services.status import node_use

router = APIRouter(prefix="/api/v1/nodes", tags=["nodes"])


@router.get("", response_model=list[NodeOut])
def list_nodes(p: Caller, ctx: Ctx) -> list[NodeOut]:
    """Every node with its capacity and the resources its live replicas hold."""
    require_unscoped(p)
    with ctx.db.read() as s:
        views = node_use(s, ctx.loop.nodes)
    return [
        NodeOut(
            name=v.node.name,
            address=v.node.address,
            capacity=Quantity(cpu=v.node.cpu, memory=v.node.memory_mib, gpu=v.node.gpu),
            used=Quantity(cpu=round(v.used.cpu, 6), memory=int(v.used.memory), gpu=int(v.used.gpu)),
        )
        for v in views
    ]
