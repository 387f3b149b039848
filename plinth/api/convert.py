"""Rows to response models."""

from __future__ import annotations

from typing import Any

from plinth.api.schemas import (
    CodeOut,
    EventOut,
    FileOut,
    GroupOut,
    JobOut,
    Quantity,
    ReplicaOut,
    UserOut,
)
from plinth.store.models import Event, File, Group, Replica, User, Workload

__all__ = ["event_out", "file_out", "group_out", "job_out", "quantity", "replica_out", "user_out"]


def quantity(q: dict[str, Any] | None) -> Quantity | None:
    if q is None:
        return None
    return Quantity(
        cpu=float(q.get("cpu", 0)), memory=int(q.get("memory", 0)), gpu=int(q.get("gpu", 0))
    )


def group_out(g: Group) -> GroupOut:
    return GroupOut(
        name=g.name,
        quota=quantity(g.quota) or Quantity(cpu=0, memory=0, gpu=0),
        borrow_limit=quantity(g.borrow_limit),
        lend_limit=quantity(g.lend_limit),
        created_at=g.created_at,
    )


def user_out(u: User, group: str) -> UserOut:
    return UserOut(
        name=u.name, group=group, admin=u.admin, cap=quantity(u.cap), created_at=u.created_at
    )


def job_out(w: Workload, group: str, user: str) -> JobOut:
    return JobOut(
        id=w.id,
        kind=w.kind,
        name=w.name,
        group=group,
        user=user,
        state=w.state,
        reason=w.reason,
        spec=w.spec,
        code=CodeOut(**w.code) if w.code else None,
        attempt=w.attempt,
        failures=w.failures,
        retries=w.retries,
        max_runtime=w.max_runtime_s,
        demand=quantity(w.demand) or Quantity(cpu=0, memory=0, gpu=0),
        created_at=w.created_at,
        queued_at=w.queued_at,
        admitted_at=w.admitted_at,
        started_at=w.started_at,
        finished_at=w.finished_at,
    )


def event_out(e: Event) -> EventOut:
    return EventOut(time=e.time, type=e.type, reason=e.reason, data=e.data)


def replica_out(r: Replica, log_size: int) -> ReplicaOut:
    return ReplicaOut(
        role=r.role,
        replica=r.replica,
        attempt=r.attempt,
        state=r.state,
        exit_code=r.exit_code,
        node=r.node,
        host=r.host,
        port=r.port,
        gpus=list(r.gpus or []),
        log_size=log_size,
        started_at=r.started_at,
        finished_at=r.finished_at,
    )


def file_out(f: File) -> FileOut:
    return FileOut(sha256=f.sha256, size=f.size, created_at=f.created_at)
