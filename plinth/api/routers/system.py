"""Unauthenticated endpoints: /healthz and /metrics; and /api/v1/whoami."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plinth.api.convert import limit
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import Health, WhoAmI
from plinth.services.users import caller_user

router = APIRouter(tags=["system"])
identity = APIRouter(prefix="/api/v1", tags=["identity"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: 200 once the server is serving."""
    return Health(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: plinth_queue_length, plinth_running_workloads,
    plinth_resources_in_use{resource}, plinth_resources_capacity{resource}."""
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )


@identity.get("/whoami", response_model=WhoAmI)
def whoami(p: Caller, ctx: Ctx) -> WhoAmI:
    """The caller's user (and workload, for a workload-scoped token)."""
    with ctx.db.read() as s:
        u = caller_user(s, p)
        return WhoAmI(
            name=u.name, group=p.group, admin=p.admin, cap=limit(u.cap),
            created_at=u.created_at, workload_id=p.workload_id,
        )  # fmt: skip
