"""/api/v1/groups: quota groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from plinth.api.convert import group_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import GroupOut
from plinth.services import groups as svc
from plinth.services.queue import group_views
from plinth.services.specs import GroupCreate, GroupPatch

router = APIRouter(prefix="/api/v1/groups", tags=["groups"])
GroupName = Annotated[str, Path(max_length=63)]


@router.post("", status_code=201, response_model=GroupOut)
def create_group(req: GroupCreate, p: Caller, ctx: Ctx) -> GroupOut:
    """Create a group (admin)."""
    with ctx.db.session() as s:
        g = svc.create_group(s, p, req)
        return group_out(g, group_views(s, ctx.loop.nodes, [g.name]).get(g.name))


@router.get("", response_model=list[GroupOut])
def list_groups(p: Caller, ctx: Ctx) -> list[GroupOut]:
    """All groups (admin) or the caller's own, each with its quota picture now:
    effective nominal (with active expansions), used, borrowed, lent, per user."""
    with ctx.db.read() as s:
        groups = svc.list_groups(s, p)
        views = group_views(s, ctx.loop.nodes, [g.name for g in groups])
        return [group_out(g, views.get(g.name)) for g in groups]


@router.get("/{name}", response_model=GroupOut)
def get_group(name: GroupName, p: Caller, ctx: Ctx) -> GroupOut:
    with ctx.db.read() as s:
        g = svc.get_group(s, p, name)
        return group_out(g, group_views(s, ctx.loop.nodes, [g.name]).get(g.name))


@router.patch("/{name}", response_model=GroupOut)
def update_group(name: GroupName, req: GroupPatch, p: Caller, ctx: Ctx) -> GroupOut:
    """Change quota, limits or caps (admin); null clears a limit or cap."""
    with ctx.db.session() as s:
        g = svc.update_group(s, p, name, req)
        s.flush()
        out = group_out(g, group_views(s, ctx.loop.nodes, [g.name]).get(g.name))
    ctx.loop.wake()  # a larger quota may admit work now
    return out


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_group(name: GroupName, p: Caller, ctx: Ctx) -> Response:
    """Delete a group without users or workloads (admin); 409 otherwise."""
    with ctx.db.session() as s:
        svc.delete_group(s, p, name)
    return Response(status_code=204)
