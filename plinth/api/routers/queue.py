"""/api/v1/queue: pending workloads in the scheduler's order with score breakdowns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import QueueEntry
from plinth.services.queue import history_trace, queue_entries

router = APIRouter(prefix="/api/v1/queue", tags=["queue"])


@router.get("", response_model=list[QueueEntry])
def get_queue(
    p: Caller, ctx: Ctx, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[QueueEntry]:
    """What the scheduler would do now, in its order. Members see only their group's
    entries; positions are global (gaps are other groups' work)."""
    with ctx.db.read() as s:
        rows = queue_entries(s, p, ctx.loop.nodes, ctx.loop.policy, ctx.loop.usage(), limit)
    return [QueueEntry.model_validate(r) for r in rows]


@router.get("/history")
def get_history(
    p: Caller, ctx: Ctx,
    since_s: Annotated[float, Query(gt=0, le=366 * 86400,
                                    description="how far back, in seconds")] = 7 * 86400,
) -> list[dict]:
    """The recorded workloads of the last ``since_s`` seconds as a scheduler trace (the
    JSONL objects of ``plinth scheduler simulate``, the cluster first; admins)."""
    with ctx.db.read() as s:
        return history_trace(s, p, ctx.loop.nodes, since_s)
