"""Live training metrics of a job: its replicas post points, users read the series.

A point is ``{role, replica, step, time, values}``: ``values`` maps a metric name
(``[A-Za-z0-9_.:/-]{1,64}``) to a finite float, ``time`` is seconds since the epoch
(the server fills it when absent), ``step`` the training step (optional). Who may
post: the job's own workload token, members of its group, admins (anyone who can see
the job and is not scoped to another workload). Bounds: :data:`MAX_POINTS_PER_REQUEST`
per post, :data:`MAX_VALUES_PER_POINT` per point, and at most
:data:`MAX_POINTS_PER_JOB` points per job: past it the oldest are dropped down to 90% of
the cap, so a long run keeps its recent history.
"""

from __future__ import annotations

import time as _time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from plinth.services.auth import Principal
from plinth.services.jobs import get_job
from plinth.services.specs import ROLE_PATTERN
from plinth.store.models import JobMetric

__all__ = [
    "MAX_POINTS_PER_JOB",
    "MAX_POINTS_PER_REQUEST",
    "MetricPointIn",
    "MetricsPost",
    "post_metrics",
    "read_metrics",
]

MAX_POINTS_PER_REQUEST = 1000
MAX_VALUES_PER_POINT = 64
MAX_POINTS_PER_JOB = 100_000
#: Most points one read returns; ask again with ``after`` for more.
MAX_POINTS_PER_READ = 10_000
METRIC_NAME_PATTERN = r"^[A-Za-z0-9_.:/-]{1,64}$"

MetricName = Annotated[str, Field(pattern=METRIC_NAME_PATTERN)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class MetricPointIn(BaseModel):
    """One point as posted."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern=ROLE_PATTERN)
    replica: int = Field(default=0, ge=0, le=1_000_000)
    step: int | None = Field(default=None, ge=0, le=2**62)
    time: FiniteFloat | None = Field(
        default=None, ge=0, le=1e11, description="seconds since the epoch; default: now"
    )
    values: dict[MetricName, FiniteFloat] = Field(min_length=1, max_length=MAX_VALUES_PER_POINT)

    @field_validator("values", mode="before")
    @classmethod
    def _plain_numbers(cls, v: Any) -> Any:
        # A boolean is not a measurement; say so instead of storing 1.0.
        if isinstance(v, dict):
            for k, x in v.items():
                if isinstance(x, bool) or not isinstance(x, int | float):
                    raise ValueError(  # noqa: TRY004 - pydantic turns ValueError into a 422
                        f"{k!r}: values must be finite numbers, got {x!r:.50}"
                    )
        return v


class MetricsPost(BaseModel):
    """The body of ``POST /api/v1/jobs/{id}/metrics``."""

    model_config = ConfigDict(extra="forbid")

    points: list[MetricPointIn] = Field(min_length=1, max_length=MAX_POINTS_PER_REQUEST)


def post_metrics(session: Session, p: Principal, job_id: str, body: MetricsPost) -> int:
    """Store the points (one transaction) and drop the job's oldest beyond the cap.
    Returns how many were accepted."""
    get_job(session, p, job_id)  # visibility: NotFound for a job the caller can't see
    now = _time.time()
    rows = [
        {"workload_id": job_id, "role": pt.role, "replica": pt.replica, "step": pt.step,
         "time": pt.time if pt.time is not None else now, "values": dict(pt.values)}
        for pt in body.points
    ]  # fmt: skip
    conn = session.connection()
    conn.execute(insert(JobMetric), rows)
    _trim(conn, job_id)
    return len(rows)


def _trim(conn: Any, job_id: str) -> None:
    """Keep the job's newest points: over MAX_POINTS_PER_JOB, drop the oldest down to 90%
    of it (so that the next posts need not trim again).

    Counting a job's points walks its index (tens of ms at the cap), so it is done only
    when ``max(id) - min(id)`` (two index lookups; ids are shared by all jobs, so this
    bounds the count from above) says the job may be over the cap."""
    low, high = conn.execute(
        select(func.min(JobMetric.id), func.max(JobMetric.id)).where(
            JobMetric.workload_id == job_id
        )
    ).one()
    if low is None or high - low + 1 <= MAX_POINTS_PER_JOB:
        return
    newest_first = (
        select(JobMetric.id).where(JobMetric.workload_id == job_id).order_by(JobMetric.id.desc())
    )
    if conn.execute(newest_first.offset(MAX_POINTS_PER_JOB).limit(1)).scalar() is None:
        return
    keep = MAX_POINTS_PER_JOB * 9 // 10
    cutoff = conn.execute(newest_first.offset(keep).limit(1)).scalar()
    conn.execute(delete(JobMetric).where(JobMetric.workload_id == job_id, JobMetric.id <= cutoff))


def read_metrics(
    session: Session,
    p: Principal,
    job_id: str,
    *,
    name: str | None = None,
    after: int | None = None,
    limit: int = MAX_POINTS_PER_READ,
) -> tuple[list[dict[str, Any]], int | None]:
    """Points of the job with id > ``after``, by id, at most ``limit`` scanned; with
    ``name`` only points that have that metric, with only that value.

    Returns ``(points, last)``: ``last`` is the id of the last point scanned (None when
    none), to pass as ``after`` next time (with ``name`` it may be past the last point
    returned)."""
    get_job(session, p, job_id)
    q = select(JobMetric).where(JobMetric.workload_id == job_id)
    if after is not None:
        q = q.where(JobMetric.id > after)
    rows = list(session.scalars(q.order_by(JobMetric.id).limit(limit)))
    points = []
    for r in rows:
        values = r.values
        if name is not None:
            if name not in values:
                continue
            values = {name: values[name]}
        points.append({"id": r.id, "role": r.role, "replica": r.replica, "step": r.step,
                       "time": r.time, "values": values})  # fmt: skip
    return points, rows[-1].id if rows else None
