"""/api/v1/quota-expansions: time-boxed extra quota for a group or a user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from plinth.api.convert import expansion_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import ExpansionOut
from plinth.services import expansions as svc
from plinth.services.specs import ExpansionCreate

router = APIRouter(prefix="/api/v1/quota-expansions", tags=["quotas"])


@router.post("", status_code=201, response_model=ExpansionOut)
def grant_expansion(req: ExpansionCreate, p: Caller, ctx: Ctx) -> ExpansionOut:
    """Grant a group or user extra quota from ``start`` (default now) until ``end`` (admin).
    It takes effect and expires by itself."""
    with ctx.db.session() as s:
        e, g, u = svc.grant_expansion(s, p, req)
        out = expansion_out(e, g, u)
    ctx.loop.wake()
    return out


@router.get("", response_model=list[ExpansionOut])
def list_expansions(
    p: Caller, ctx: Ctx, active: Annotated[bool, Query(description="only active now")] = False
) -> list[ExpansionOut]:
    """Expansions with history, newest first (admins: all; members: their group's and
    their own)."""
    with ctx.db.read() as s:
        return [expansion_out(*row) for row in svc.list_expansions(s, p, active_only=active)]


@router.delete("/{expansion_id}", response_model=ExpansionOut)
def revoke_expansion(
    expansion_id: Annotated[int, Path(ge=1, le=2**62)],
    p: Caller,
    ctx: Ctx,
    reason: Annotated[str, Query(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                                 description="why it is revoked (recorded)")],
) -> ExpansionOut:
    """Revoke an expansion (admin): it ends now and admits no new work; work admitted
    under it keeps running as borrowing and is reclaimable. Recorded with who and why."""
    with ctx.db.session() as s:
        out = expansion_out(*svc.revoke_expansion(s, p, expansion_id, reason))
    ctx.loop.wake()
    return out
