"""/api/v1/notebooks: start, list, get, stop and extend JupyterLab sessions; their
events and log (docs/notebooks.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from plinth.api.context import AppContext
from plinth.api.convert import event_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import EventOut
from plinth.services import notebooks as svc
from plinth.services.auth import Principal
from plinth.store.models import Event, Workload

router = APIRouter(prefix="/api/v1/notebooks", tags=["notebooks"])

NotebookId = Annotated[str, Path(max_length=64, description="the session's id, e.g. nb-3f9a2c1b7d4e")]
StateName = Literal[
    "pending", "admitted", "running", "succeeded", "failed", "cancelled", "timed_out"
]


class NotebookOut(BaseModel):
    id: str
    name: str
    group: str
    user: str
    state: str
    reason: str
    ready: bool = Field(description="JupyterLab answers at `url` (event `ready`)")
    url: str | None = Field(description="JupyterLab's address (without the token)")
    token: str | None = Field(
        description="the session's own Jupyter token: shown to its owner and admins only"
    )
    resources: dict[str, Any] = Field(description="cpu cores, memory MiB, gpu devices")
    idle_timeout: float = Field(description="seconds")
    max_lifetime: float = Field(description="seconds, extensions included")
    lifetime_cap: float = Field(description="seconds: the most `extend` may reach")
    ends_at: datetime | None
    workspace: str | None = Field(description="the user's persistent workspace")
    window: dict[str, Any] | None = Field(
        description="a booked session's reservation: {reservation, start, end}"
    )
    activity: dict[str, Any] | None = Field(
        description="the monitor's last reading of jupyter-server's activity record"
    )
    log_tail: str | None = Field(description="a failed session's last log lines")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _out(ctx: AppContext, p: Principal, w: Workload, user: str, ready: bool,
         host_port: tuple[str, int] | None, log_tail: str | None) -> NotebookOut:  # fmt: skip
    nb = w.spec.get("notebook") or {}
    reading = ctx.notebooks.reading(w.id) if ctx.notebooks is not None else None
    live = w.state == "running"
    window = None
    if nb.get("reservation"):
        window = {"reservation": nb["reservation"], "start": nb.get("window_start"),
                  "end": nb.get("window_end")}  # fmt: skip
    return NotebookOut(
        id=w.id, name=w.name, group=w.spec.get("group", ""), user=user, state=w.state,
        reason=w.reason, ready=ready and live,
        url=svc.notebook_url(*host_port) if host_port and live else None,
        token=nb.get("token") if svc.may_use(p, w) else None,
        resources=dict(w.spec["roles"][svc.ROLE]["resources"]),
        idle_timeout=float(nb.get("idle_timeout", 0)), max_lifetime=float(nb.get("lifetime", 0)),
        lifetime_cap=float(nb.get("lifetime_cap", 0)), ends_at=svc.ends_at(w),
        workspace=nb.get("workspace") if svc.may_use(p, w) else None, window=window,
        activity=reading.to_dict() if reading is not None and live else None,
        log_tail=log_tail, created_at=w.created_at, started_at=w.started_at,
        finished_at=w.finished_at,
    )  # fmt: skip


def _render(ctx: AppContext, p: Principal, ws: list[Workload]) -> list[NotebookOut]:
    from plinth.services.notebook_monitor import _tail

    with ctx.db.read() as s:
        users = svc.names(s, ws)
        ids = [w.id for w in ws]
        ready = set(s.scalars(select(Event.workload_id).where(
            Event.workload_id.in_(ids), Event.type == "ready"))) if ids else set()  # fmt: skip
        reps = {w.id: svc.current_replica(s, w) for w in ws}
    out = []
    for w in ws:
        r = reps[w.id]
        tail = _tail(FilePath(r.log_path), 2048) if (
            r is not None and w.state == "failed") else None  # fmt: skip
        out.append(_out(ctx, p, w, users.get(w.user_id, ""), w.id in ready,
                        (r.host, r.port) if r is not None else None, tail))  # fmt: skip
    return out


@router.post("", status_code=201, response_model=NotebookOut)
def start_notebook(req: svc.NotebookCreate, p: Caller, ctx: Ctx) -> NotebookOut:
    """Start a JupyterLab session now, or book one (`at` + `duration`): it is queued
    and admitted under the user's quota like a job; `ready` turns true once JupyterLab
    answers at `url` (open it with `token`)."""
    with ctx.db.read() as s:
        new = svc.prepare_notebook(s, p, req, ctx.cfg, ctx.loop.capacity(), ctx.home)
    loop = ctx.loop
    with loop.submitting() as admit, ctx.db.session() as s:
        w = svc.insert_notebook(s, p, new)
        admitted = admit(s, w, p.user) if admit is not None else None
    if admitted is None:
        loop.wake(w)
    else:
        loop.start_admitted(admitted)
    with ctx.db.read() as s:
        w = svc.get_notebook(s, p, w.id)
        s.expunge(w)
    return _render(ctx, p, [w])[0]


@router.get("", response_model=list[NotebookOut])
def list_notebooks(
    p: Caller, ctx: Ctx, state: StateName | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[NotebookOut]:  # fmt: skip
    """Sessions the caller may see (its group's; every one for an admin), newest first."""
    with ctx.db.read() as s:
        ws = svc.list_notebooks(s, p, state, limit)
        for w in ws:
            s.expunge(w)
    return _render(ctx, p, ws)


@router.get("/{notebook_id}", response_model=NotebookOut)
def get_notebook(notebook_id: NotebookId, p: Caller, ctx: Ctx) -> NotebookOut:
    with ctx.db.read() as s:
        w = svc.get_notebook(s, p, notebook_id)
        s.expunge(w)
    return _render(ctx, p, [w])[0]


@router.post("/{notebook_id}/stop", response_model=NotebookOut)
def stop_notebook(notebook_id: NotebookId, p: Caller, ctx: Ctx) -> NotebookOut:
    """Stop the session: jupyter-server gets SIGTERM (it shuts its kernels down), SIGKILL
    after the grace period; its resources return. A finished one is returned as is."""
    with ctx.db.session() as s:
        w = svc.stop_notebook(s, p, notebook_id)
        s.flush()
        s.expunge(w)
    ctx.loop.wake()
    return _render(ctx, p, [w])[0]


@router.post("/{notebook_id}/extend", response_model=NotebookOut)
def extend_notebook(notebook_id: NotebookId, body: svc.NotebookExtend, p: Caller, ctx: Ctx) -> NotebookOut:
    """Push the session's lifetime by `by` (e.g. ``2h``), within its group's cap."""
    with ctx.db.session() as s:
        w = svc.extend_notebook(s, p, notebook_id, body.by)
        s.flush()
        s.expunge(w)
    return _render(ctx, p, [w])[0]


@router.get("/{notebook_id}/events", response_model=list[EventOut])
def notebook_events(notebook_id: NotebookId, p: Caller, ctx: Ctx) -> list[EventOut]:
    """Every event of the session, oldest first (``ready``, warnings, why it ended)."""
    with ctx.db.read() as s:
        return [event_out(e) for e in svc.notebook_events(s, p, notebook_id)]


@router.get(
    "/{notebook_id}/logs",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "JupyterLab's output; headers X-Log-Offset and "
                     "X-Log-Complete as for job logs"}},
)  # fmt: skip
def notebook_logs(
    notebook_id: NotebookId, p: Caller, ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> Response:  # fmt: skip
    """JupyterLab's output (the latest attempt) from byte `offset`."""
    with ctx.db.read() as s:
        chunk = svc.read_notebook_log(s, p, notebook_id, offset)
    return Response(chunk.data, media_type="text/plain", headers={
        "X-Log-Offset": str(chunk.next_offset),
        "X-Log-Complete": "true" if chunk.complete else "false",
    })  # fmt: skip
