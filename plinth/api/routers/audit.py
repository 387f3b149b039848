"""/api/v1/audit: who changed quotas, expansions, users and tokens, and when (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from plinth.api.deps import Caller, Ctx
from plinth.services.audit import list_audit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


_ACTION = "an action (token.revoke), or a prefix ending in '.' (token.)"


class AuditOut(BaseModel):
    id: int
    time: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None


@router.get("", response_model=list[AuditOut])
def audit(
    p: Caller,
    ctx: Ctx,
    since: datetime | None = None,
    action: Annotated[str | None, Query(max_length=63, description=_ACTION)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AuditOut]:
    """Audit records, oldest first (admins)."""
    with ctx.db.read() as s:
        return [
            AuditOut(id=r.id, time=r.time, actor=r.actor, action=r.action, target=r.target,
                     details=r.details)
            for r in list_audit(s, p, since=since, action=action, limit=limit)
        ]  # fmt: skip
