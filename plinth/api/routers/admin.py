"""/api/v1/admin: maintenance actions (admins): a retention sweep now."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from plinth.api.deps import Caller, Ctx
from plinth.services.auth import require_admin
from plinth.services.retention import sweep

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class GcOut(BaseModel):
    workloads: list[str] = Field(description="finished workloads whose files were removed")
    uploads: list[str] = Field(description="sha256 of the unused uploads removed")
    code_versions: list[str] = Field(description="extracted code versions removed")
    bytes_freed: int


@router.post("/gc", response_model=GcOut)
async def gc(p: Caller, ctx: Ctx) -> GcOut:
    """Run a retention sweep now (see `retention:` in the configuration)."""
    require_admin(p)
    report = await run_in_threadpool(sweep, ctx.db, ctx.home, ctx.cfg.retention)
    return GcOut(**report.as_dict())
