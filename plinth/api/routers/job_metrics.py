"""/api/v1/jobs/{id}/metrics: live training metrics posted by a job's replicas."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from plinth.api.deps import Caller, Ctx
from plinth.services import job_metrics as svc

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(max_length=64, description="the job's id, e.g. job-3f9a2c1b7d4e")]


class Accepted(BaseModel):
    accepted: int = Field(description="points stored")


class MetricPointOut(BaseModel):
    id: int = Field(description="increasing; pass the last one seen as `after`")
    role: str
    replica: int
    step: int | None
    time: float = Field(description="seconds since the epoch")
    values: dict[str, float]


class MetricsOut(BaseModel):
    points: list[MetricPointOut]
    last: int | None = Field(
        description="id of the last point scanned (with `name` it may be past the last "
        "point returned); ask again with after=last for newer points"
    )


@router.post("/{job_id}/metrics", response_model=Accepted)
def post_metrics(job_id: JobId, body: svc.MetricsPost, p: Caller, ctx: Ctx) -> Accepted:
    """Report metrics points (the job's workload token, its group's members, admins).
    At most 1000 points per request; values must be finite numbers."""
    with ctx.db.session() as s:
        return Accepted(accepted=svc.post_metrics(s, p, job_id, body))


@router.get("/{job_id}/metrics", response_model=MetricsOut)
def get_metrics(
    job_id: JobId,
    p: Caller,
    ctx: Ctx,
    name: Annotated[str | None, Query(pattern=svc.METRIC_NAME_PATTERN)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=svc.MAX_POINTS_PER_READ)] = svc.MAX_POINTS_PER_READ,
) -> MetricsOut:
    """The job's points with id > `after`, ordered by id; with `name` only that metric."""
    with ctx.db.read() as s:
        points, last = svc.read_metrics(s, p, job_id, name=name, after=after, limit=limit)
    return MetricsOut(points=[MetricPointOut(**pt) for pt in points], last=last)
