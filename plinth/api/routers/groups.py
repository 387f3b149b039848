"""/api/v1/groups: quota groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from plinth.api.convert import group_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import GroupOut
from plinth.services import groups as svc
from plinth.services.specs import GroupCreate, GroupPatch

router = APIRouter(prefix="/api/v1/groups", tags=["groups"])
GroupName = Annotated[str, Path(max_length=63)]


@router.post("", status_code=201, response_model=GroupOut)
def create_group(req: GroupCreate, p: Caller, ctx: Ctx) -> GroupOut:
    """Create a group (admin)."""
    with ctx.db.session() as s:
        return group_out(svc.create_group(s, p, req))


@router.get("", response_model=list[GroupOut])
def list_groups(p: Caller, ctx: Ctx) -> list[GroupOut]:
    """All groups (admin) or the caller's own."""
    with ctx.db.read() as s:
        return [group_out(g) for g in svc.list_groups(s, p)]


@router.get("/{name}", response_model=GroupOut)
def get_group(name: GroupName, p: Caller, ctx: Ctx) -> GroupOut:
    with ctx.db.read() as s:
        return group_out(svc.get_group(s, p, name))


@router.patch("/{name}", response_model=GroupOut)
def update_group(name: GroupName, req: GroupPatch, p: Caller, ctx: Ctx) -> GroupOut:
    """Change quota / borrow_limit / lend_limit (admin); null clears a limit."""
    with ctx.db.session() as s:
        return group_out(svc.update_group(s, p, name, req))


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_group(name: GroupName, p: Caller, ctx: Ctx) -> Response:
    """Delete a group without users or workloads (admin); 409 otherwise."""
    with ctx.db.session() as s:
        svc.delete_group(s, p, name)
    return Response(status_code=204)
