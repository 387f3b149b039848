"""/api/v1/jobs: submit, list, get, cancel, rerun; events, replicas and logs."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from plinth.api.convert import event_out, job_out, replica_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import EventOut, ExplainOut, JobOut, ReplicaOut
from plinth.services import jobs as svc
from plinth.services.queue import explain_job
from plinth.services.specs import NAME_PATTERN, ROLE_PATTERN
from plinth.services.submission import queue_job
from plinth.services.template_model import JobSubmission, TemplatedJob
from plinth.services.templates import expand_job

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(max_length=64, description="the job's id, e.g. job-3f9a2c1b7d4e")]
StateName = Literal[
    "pending", "admitted", "running", "succeeded", "failed", "cancelled", "timed_out"
]


def _one(ctx: Ctx, w) -> JobOut:
    with ctx.db.read() as s:
        g, u = svc.names_for(s, [w])[w.id]
    return job_out(w, g, u)


def _queue(ctx: Ctx, p: Caller, new: svc.NewJob) -> JobOut:
    w = queue_job(ctx.db, ctx.loop, p, new)
    return job_out(w, w.spec["group"], p.user)


@router.post("", status_code=201, response_model=JobOut)
def submit_job(spec: JobSubmission, p: Caller, ctx: Ctx) -> JobOut:
    """Queue a job: a full spec, or a template to expand (``template``, ``params``; see
    docs/templates.md). A git ref is resolved to its commit now and recorded."""
    record = None
    with ctx.db.read() as s:  # validation reads take no write lock
        if isinstance(spec, TemplatedJob):
            spec, record = expand_job(s, p, spec, ctx.home)
        new = svc.prepare_job(s, p, spec, ctx.cfg, ctx.loop.capacity())
    if record is not None:
        new.values["template"] = record
    return _queue(ctx, p, new)


@router.get("", response_model=list[JobOut])
def list_jobs(
    p: Caller,
    ctx: Ctx,
    state: StateName | None = None,
    group: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[JobOut]:
    """Jobs the caller may see, newest first."""
    with ctx.db.read() as s:
        ws = svc.list_jobs(s, p, state, group, limit)
        names = svc.names_for(s, ws)
    return [job_out(w, *names[w.id]) for w in ws]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: JobId, p: Caller, ctx: Ctx) -> JobOut:
    with ctx.db.read() as s:
        w = svc.get_job(s, p, job_id)
        g, u = svc.names_for(s, [w])[w.id]
    return job_out(w, g, u)


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: JobId, p: Caller, ctx: Ctx) -> JobOut:
    """Cancel: SIGTERM to every replica, SIGKILL after the grace period. A finished job
    is returned unchanged."""
    with ctx.db.session() as s:
        w = svc.cancel_job(s, p, job_id)
    ctx.loop.wake()
    return _one(ctx, w)


@router.post("/{job_id}/rerun", status_code=201, response_model=JobOut)
def rerun_job(job_id: JobId, p: Caller, ctx: Ctx) -> JobOut:
    """A new job with the same spec and the same recorded code (commit or file)."""
    with ctx.db.read() as s:
        new = svc.prepare_rerun(s, p, job_id, ctx.cfg, ctx.loop.capacity())
    return _queue(ctx, p, new)


@router.get("/{job_id}/events", response_model=list[EventOut])
def job_events(job_id: JobId, p: Caller, ctx: Ctx) -> list[EventOut]:
    """Every event of the job, oldest first."""
    with ctx.db.read() as s:
        return [event_out(e) for e in svc.job_events(s, p, job_id)]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@router.get("/{job_id}/replicas", response_model=list[ReplicaOut])
def job_replicas(job_id: JobId, p: Caller, ctx: Ctx) -> list[ReplicaOut]:
    """One row per role/replica/attempt; every attempt is kept."""
    with ctx.db.read() as s:
        rows = svc.job_replicas(s, p, job_id)
    return [replica_out(r, _size(r.log_path)) for r in rows]


@router.get(
    "/{job_id}/logs/{role}/{replica}",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "log bytes; headers X-Log-Offset (ask next from here) and "
            "X-Log-Complete (true once the attempt ended and all output was returned)",
        }
    },
)
def job_logs(
    job_id: JobId,
    role: Annotated[str, Path(pattern=ROLE_PATTERN)],
    replica: Annotated[int, Path(ge=0, le=1_000_000)],
    p: Caller,
    ctx: Ctx,
    attempt: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> Response:
    """Output of one replica attempt (default: the latest) from byte `offset`."""
    with ctx.db.read() as s:
        chunk = svc.read_log(s, p, job_id, role, replica, attempt, offset)
    return Response(
        chunk.data,
        media_type="text/plain",
        headers={
            "X-Log-Offset": str(chunk.next_offset),
            "X-Log-Complete": "true" if chunk.complete else "false",
        },
    )


@router.get("/{job_id}/explain", response_model=ExplainOut)
def explain(job_id: JobId, p: Caller, ctx: Ctx) -> ExplainOut:
    """Why the job waits: position, score breakdown, and the exact reason with numbers
    (or what it is doing when it is not pending)."""
    with ctx.db.read() as s:
        out = explain_job(s, p, job_id, ctx.loop.nodes, ctx.loop.policy, ctx.loop.usage())
    return ExplainOut.model_validate(out)
