"""/api/v1/deployments: models served by replicas under quota, and their endpoint.

Request and response shapes live here (one resource, one module); the rules are in
:mod:`plinth.services.deployments`, the endpoint's balancing and retries in
:mod:`plinth.services.deployment_traffic`.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from plinth.api.convert import event_out, quantity
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import EventOut, Quantity
from plinth.services import deployments as svc
from plinth.services.deployment_traffic import Traffic
from plinth.services.errors import Conflict, TooLarge
from plinth.services.jobs import names_for
from plinth.store.models import Replica, Workload

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])

Name = Annotated[str, Path(max_length=63, description="the deployment's name")]
MAX_PREDICT_BODY = 16 * 1024 * 1024  # bytes, as the model server's own cap

_traffic: Traffic | None = None
_traffic_lock = threading.Lock()


def _shared_traffic() -> Traffic:
    global _traffic
    with _traffic_lock:
        if _traffic is None:
            _traffic = Traffic()
        return _traffic


class DeploymentReplicaOut(BaseModel):
    role: str = Field(description="replica, or canary for the canary's replicas")
    replica: int
    state: str = Field(description="launching | running | failed | lost | stopped | ...")
    host: str
    port: int
    exit_code: int | None
    started_at: datetime | None = Field(description="its latest (re)start")
    finished_at: datetime | None


class CanaryOut(BaseModel):
    alias: str | None = Field(description="the alias it follows; null: a pinned version")
    version: int | None = Field(description="the version its replicas serve")
    percent: float = Field(description="the share of requests it gets")
    replicas: int


class DeploymentOut(BaseModel):
    id: str = Field(description="the workload's id")
    name: str
    group: str
    user: str
    model: str
    alias: str | None = Field(description="the alias it follows; null: a pinned version")
    version: int | None = Field(description="the version it serves (or is moving to) now")
    replicas: int = Field(description="replicas asked for (without the canary's)")
    ready_replicas: int = Field(description="of those, running now")
    canary: CanaryOut | None = Field(description="another version getting a share of "
                                                 "the requests; null: none")
    resources: Quantity = Field(description="per replica")
    demand: Quantity = Field(description="all replicas together, held under the quota")
    state: str
    reason: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    endpoint: str = Field(description="POST here: a list of feature dicts -> predictions")
    replica_status: list[DeploymentReplicaOut]


def _out(s: Any, w: Workload) -> DeploymentOut:
    g, u = names_for(s, [w])[w.id]
    serving = svc.serving_info(s, w)
    reps: list[Replica] = svc.deployment_replicas(s, w)
    role = w.spec["roles"][svc.ROLE]
    return DeploymentOut(
        id=w.id, name=w.name, group=g, user=u, model=serving["model"] or "",
        alias=serving["alias"], version=serving["target_version"],
        replicas=int(role["replicas"]),
        ready_replicas=sum(r.state == "running" and r.role == svc.ROLE for r in reps),
        canary=None if serving["canary"] is None else CanaryOut(**serving["canary"]),
        resources=quantity(role["resources"]),  # type: ignore[arg-type]
        demand=quantity(w.demand),  # type: ignore[arg-type]
        state=w.state, reason=w.reason, created_at=w.created_at, started_at=w.started_at,
        finished_at=w.finished_at, endpoint=f"/api/v1/deployments/{w.name}/predict",
        replica_status=[DeploymentReplicaOut(
            role=r.role, replica=r.replica, state=r.state, host=r.host, port=r.port,
            exit_code=r.exit_code, started_at=r.started_at, finished_at=r.finished_at)
            for r in reps],
    )  # fmt: skip


@router.post("", status_code=201, response_model=DeploymentOut)
def create_deployment(body: svc.DeploymentCreate, p: Caller, ctx: Ctx) -> DeploymentOut:
    """Deploy ``model`` (``NAME@ALIAS``, followed, or ``NAME@VERSION``) on ``replicas``
    replicas of ``resources`` each: a workload scheduled under the group's quota."""
    with ctx.db.read() as s:
        new = svc.prepare_deployment(s, p, body, ctx.cfg, ctx.loop.capacity())
    w = svc.create_deployment(ctx.db, ctx.loop, p, new)
    with ctx.db.read() as s:
        return _out(s, s.merge(w, load=True))


@router.get("", response_model=list[DeploymentOut])
def list_deployments(
    p: Caller, ctx: Ctx,
    all: Annotated[bool, Query(description="include deleted and failed ones")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[DeploymentOut]:
    """Deployments the caller may see, newest first."""
    with ctx.db.read() as s:
        return [_out(s, w) for w in svc.list_deployments(s, p, all, limit)]


@router.get("/{name}", response_model=DeploymentOut)
def get_deployment(name: Name, p: Caller, ctx: Ctx) -> DeploymentOut:
    with ctx.db.read() as s:
        return _out(s, svc.get_deployment(s, p, name))


@router.delete("/{name}", response_model=DeploymentOut)
def delete_deployment(name: Name, p: Caller, ctx: Ctx) -> DeploymentOut:
    """Stop its replicas (SIGTERM, SIGKILL after the grace period); its resources go
    back to the group's quota once they have exited."""
    with ctx.db.session() as s:
        w = svc.delete_deployment(s, p, name)
        wid = w.id
    ctx.loop.wake()
    with ctx.db.read() as s:
        return _out(s, svc.get_deployment(s, p, name, wid))


@router.post("/{name}/scale", response_model=DeploymentOut)
def scale_deployment(name: Name, body: svc.DeploymentScale, p: Caller,
                     ctx: Ctx) -> DeploymentOut:
    """Change the number of replicas: the deployment is admitted again with its new size
    under the quota (its replicas restart)."""
    with ctx.db.session() as s:
        w = svc.scale_deployment(s, p, name, body.replicas, ctx.cfg, ctx.loop.capacity())
        wid = w.id
    ctx.loop.wake()
    with ctx.db.read() as s:
        return _out(s, svc.get_deployment(s, p, name, wid))


@router.post("/{name}/traffic", response_model=DeploymentOut)
def split_traffic(name: Name, body: svc.TrafficSplit, p: Caller, ctx: Ctx) -> DeploymentOut:
    """Set the share of requests (percent) the canary's replicas get; at once, with no
    restart. To promote the canary, move the main alias to its version."""
    with ctx.db.session() as s:
        w = svc.split_traffic(s, p, name, body.canary_percent)
        wid = w.id
    with ctx.db.read() as s:
        return _out(s, svc.get_deployment(s, p, name, wid))


@router.get("/{name}/events", response_model=list[EventOut])
def deployment_events(name: Name, p: Caller, ctx: Ctx) -> list[EventOut]:
    """Every event of the deployment (its workload), oldest first: admission, replica
    exits and restarts, version swaps, deltas applied."""
    with ctx.db.read() as s:
        return [event_out(e) for e in svc.deployment_events(s, svc.get_deployment(s, p, name))]


@router.post(
    "/{name}/predict",
    responses={
        200: {"description": "the model server's answer: {predictions, model, version, "
                             "delta_seq}; header X-Plinth-Replica says which replica"},
        503: {"description": "no replica answered (none running yet, or all restarting)"},
    },
)
async def predict(name: Name, request: Request, p: Caller, ctx: Ctx) -> Response:
    """Score feature dicts (a JSON list, or ``{"instances": [...]}``) on one of the
    deployment's replicas, balanced round-robin; a replica that is restarting or dead
    is skipped and the request goes to another."""
    body = await request.body()
    if len(body) > MAX_PREDICT_BODY:
        raise TooLarge(f"the body is {len(body)} bytes; at most {MAX_PREDICT_BODY} allowed")

    def find() -> Workload:
        with ctx.db.read() as s:
            return svc.get_deployment(s, p, name)

    w = await run_in_threadpool(find)
    if w.state != "running":
        if w.state in ("pending", "admitted"):
            return JSONResponse({"detail": f"deployment {name!r} is {w.state}, not serving "
                                           f"yet: {w.reason}"}, status_code=503,
                                headers={"Retry-After": "5"})
        raise Conflict(f"deployment {name!r} is {w.state} ({w.reason}); create it again")
    wid = w.id

    info = w.spec.get(svc.DEPLOYMENT) or {}
    roles = [svc.ROLE]
    if info.get(svc.CANARY):
        # Read the share now: a split change applies to the next request.
        roles = [svc.CANARY, svc.ROLE] if random.random() * 100 < float(
            info["canary_percent"]) else [svc.ROLE, svc.CANARY]

    def replicas() -> list[list[str]]:
        with ctx.db.read() as s:
            return [svc.running_addresses(s, wid, r) for r in roles]

    answer = await run_in_threadpool(_shared_traffic().predict, replicas, body)
    headers = {"X-Plinth-Replica": answer.replica or ""}
    if answer.replica is None:
        headers["Retry-After"] = "1"
        return JSONResponse({"detail": answer.content.decode()}, status_code=503,
                            headers=headers)
    return Response(answer.content, status_code=answer.status, media_type=answer.media_type,
                    headers=headers)
