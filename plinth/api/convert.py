"""Rows to response models."""

from __future__ import annotations

from typing import Any

from plinth.api.schemas import (
    CodeOut,
    EventOut,
    ExpansionOut,
    FileOut,
    GroupOut,
    GroupStatusOut,
    GroupUserOut,
    JobOut,
    Limit,
    Quantity,
    ReplicaOut,
    ReservationOut,
    UserOut,
)
from plinth.scheduler import Resources
from plinth.services.expansions import status as expansion_status
from plinth.services.queue import GroupView
from plinth.services.specs import redact_url
from plinth.store.models import (
    Event,
    File,
    Group,
    QuotaExpansion,
    Replica,
    Reservation,
    User,
    Workload,
)

__all__ = [
    "event_out",
    "expansion_out",
    "file_out",
    "group_out",
    "job_out",
    "limit",
    "quantity",
    "replica_out",
    "reservation_out",
    "user_out",
]


def quantity(q: dict[str, Any] | None) -> Quantity | None:
    if q is None:
        return None
    return _q(Resources.from_dict(q))


def limit(q: dict[str, Any] | None) -> Limit | None:
    """A stored cap or limit: the resources written; the others are not capped (null)."""
    if q is None:
        return None
    return Limit(
        cpu=float(q["cpu"]) if "cpu" in q else None,
        memory=int(q["memory"]) if "memory" in q else None,
        gpu=int(q["gpu"]) if "gpu" in q else None,
    )


def _q(r: Resources) -> Quantity:
    return Quantity(cpu=float(r.cpu), memory=int(r.memory), gpu=int(r.gpu))


def group_out(g: Group, view: GroupView | None = None) -> GroupOut:
    out = GroupOut(
        name=g.name,
        quota=quantity(g.quota) or Quantity(cpu=0, memory=0, gpu=0),
        borrow_limit=limit(g.borrow_limit),
        lend_limit=limit(g.lend_limit),
        max_job=None if g.max_job is None else {k: float(v) for k, v in g.max_job.items()},
        max_runtime=g.max_runtime_s,
        max_workloads_per_user=g.max_workloads_per_user,
        created_at=g.created_at,
    )
    if view is not None:
        st = view.status
        out.status = GroupStatusOut(
            nominal=_q(st.nominal), expansion=_q(st.expansion), used=_q(st.used),
            borrowed=_q(st.borrowed), lent=_q(st.lent), lendable=_q(st.lendable),
            guaranteed=_q(st.guaranteed),
        )  # fmt: skip
        out.users = [
            GroupUserOut(name=n, cap=limit(u["cap"]), used=quantity(u["used"]))  # type: ignore[arg-type]
            for n, u in sorted(view.users.items())
        ]
        names = view.user_names
        out.expansions = [
            expansion_out(e, None if e.group_id is None else g.name, names.get(e.user_id))
            for e in view.expansions
        ]
    return out


def expansion_out(e: QuotaExpansion, group: str | None, user: str | None) -> ExpansionOut:
    return ExpansionOut(
        id=e.id, group=group, user=user, add=quantity(e.add) or Quantity(cpu=0, memory=0, gpu=0),
        start=e.start, end=e.end, reason=e.reason, granted_by=e.granted_by,
        created_at=e.created_at, status=expansion_status(e), revoked_at=e.revoked_at,
        revoked_by=e.revoked_by, revoke_reason=e.revoke_reason,
    )  # fmt: skip


def reservation_out(r: Reservation, group: str | None, user: str | None) -> ReservationOut:
    return ReservationOut(
        id=r.id, group=group, user=user,
        resources=quantity(r.resources) or Quantity(cpu=0, memory=0, gpu=0), node=r.node,
        start=r.start, end=r.end, reason=r.reason, created_by=r.created_by,
        created_at=r.created_at,
    )  # fmt: skip


def user_out(u: User, group: str) -> UserOut:
    return UserOut(
        name=u.name, group=group, admin=u.admin, cap=limit(u.cap), created_at=u.created_at
    )


def job_out(w: Workload, group: str, user: str) -> JobOut:
    return JobOut(
        id=w.id,
        priority=w.priority,
        preemptions=w.preemptions,
        kind=w.kind,
        name=w.name,
        group=group,
        user=user,
        state=w.state,
        reason=w.reason,
        spec=_redacted_spec(w.spec),
        template=w.template,
        code=CodeOut(**_redacted_code(w.code)) if w.code else None,
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


def _redacted_code(code: dict[str, Any]) -> dict[str, Any]:
    if code.get("url"):
        return {**code, "url": redact_url(code["url"])}
    return code


def _redacted_spec(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """The spec as returned: a git URL's credentials (older records) hidden."""
    code = (spec or {}).get("code")
    if isinstance(code, dict) and isinstance(code.get("git"), str):
        return {**spec, "code": {**code, "git": redact_url(code["git"])}}  # type: ignore[dict-item]
    return spec
