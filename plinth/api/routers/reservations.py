"""/api/v1/reservations: capacity kept free for a group or a user during a window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from plinth.api.convert import reservation_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import ReservationOut
from plinth.services import reservations as svc
from plinth.services.specs import ReservationCreate

router = APIRouter(prefix="/api/v1/reservations", tags=["reservations"])


@router.post("", status_code=201, response_model=ReservationOut)
def create_reservation(req: ReservationCreate, p: Caller, ctx: Ctx) -> ReservationOut:
    """Book capacity for a group or user (admin); it must fit one node."""
    with ctx.db.session() as s:
        out = reservation_out(*svc.create_reservation(s, p, req, ctx.loop.nodes))
    ctx.loop.wake()
    return out


@router.get("", response_model=list[ReservationOut])
def list_reservations(
    p: Caller,
    ctx: Ctx,
    all: Annotated[bool, Query(description="include ended reservations")] = False,
) -> list[ReservationOut]:
    """Reservations by start time (admins: all; members: their group's and their own)."""
    with ctx.db.read() as s:
        return [reservation_out(*row) for row in svc.list_reservations(s, p, include_ended=all)]


@router.delete("/{rid}", status_code=204, response_class=Response)
def delete_reservation(rid: Annotated[str, Path(max_length=64)], p: Caller, ctx: Ctx) -> Response:
    """Cancel a reservation (admin)."""
    with ctx.db.session() as s:
        svc.delete_reservation(s, p, rid)
    ctx.loop.wake()
    return Response(status_code=204)
