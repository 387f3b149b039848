"""Jobs: submit, read, cancel, rerun, and read their events, replicas and logs.

Authorization: admins see every workload; members their group's; a workload-scoped
token only its workload. Anything not visible is reported as not found (404), so
members never learn that another group's job exists.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from plinth.config import ServerConfig
from plinth.scheduler.resources import ZERO, Resources, over_limit
from plinth.services import events as ev
from plinth.services.admission import NodeFree, ReplicaDemand, unplaceable_reason
from plinth.services.auth import Principal, require_unscoped
from plinth.services.errors import Conflict, Forbidden, Invalid, NotFound
from plinth.services.files import usable_by
from plinth.services.lifecycle import FINAL, LIVE, InvalidTransition, State, transition
from plinth.services.specs import CodeFile, CodeGit, JobSpec
from plinth.services.submit_limits import check_pending_limits, check_user_cap
from plinth.services.visibility import visible_workload, where_visible
from plinth.store.models import Event, Group, Replica, User, Workload, utcnow

__all__ = [
    "JOB",
    "LogChunk",
    "NewJob",
    "cancel_job",
    "get_job",
    "insert_job",
    "job_events",
    "job_replicas",
    "list_jobs",
    "new_workload_id",
    "prepare_job",
    "prepare_rerun",
    "read_log",
    "replica_demands",
    "submit_job",
]

JOB = "job"
LOG_CHUNK_MAX = 4 * 1024 * 1024  # bytes returned by one logs request at most


def new_workload_id(kind: str = JOB) -> str:
    """A short random id: ``job-`` + 12 hex digits."""
    return f"{kind}-{secrets.token_hex(6)}"


def replica_demands(spec: dict[str, Any]) -> tuple[ReplicaDemand, ...]:
    """Every replica of a (normalised) spec with its resources, in role then replica order."""
    out = []
    for role, r in spec["roles"].items():
        res = r["resources"]
        for i in range(r["replicas"]):
            out.append(
                ReplicaDemand(role, i, float(res["cpu"]), int(res["memory"]), int(res["gpu"]))
            )
    return tuple(out)


def _demand(reps: tuple[ReplicaDemand, ...]) -> Resources:
    return sum((Resources(r.cpu, r.memory, r.gpu) for r in reps), ZERO)


def _resolve_group(session: Session, p: Principal, name: str | None) -> tuple[int, str]:
    if name is None or name == p.group:
        return p.group_id, p.group
    if not p.admin:
        raise Forbidden(f"members may only submit to their own group {p.group!r}, not {name!r}")
    gid = session.scalar(select(Group.id).where(Group.name == name))
    if gid is None:
        raise Invalid(f"group: no group named {name!r}")
    return gid, name


def check_local_git(p: Principal, url: str, cfg: ServerConfig) -> None:
    """Members may use a repository on the server's own disk (a path or ``file://``)
    only under ``code.git_local_roots``; admins may use any. Forbidden otherwise.

    The path is compared after resolving symlinks and ``..``, so a link inside a root
    cannot point the server at another directory."""
    from plinth.artifacts.gitcode import _local_path

    path = _local_path(url)
    if path is None or p.admin:
        return
    real = os.path.realpath(path)
    for root in cfg.code.git_local_roots:
        r = os.path.realpath(root)
        if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
            return
    roots = ", ".join(cfg.code.git_local_roots) or "none configured"
    raise Forbidden(
        f"code.git: {url!r} is a repository on the server's disk; members may only use "
        f"local repositories under code.git_local_roots in the server's configuration "
        f"(now: {roots}). Ask an admin to add a directory containing it there, or use a "
        "remote git URL, or upload the code (code: {file: ...})"
    )


def _resolve_code(
    session: Session, spec: JobSpec, p: Principal, cfg: ServerConfig
) -> dict[str, Any] | None:
    code = spec.code
    if code is None:
        return None
    if isinstance(code, CodeFile):
        if not usable_by(session, p, code.file):  # uploads are the uploading group's
            raise Invalid(
                f"code.file: no uploaded file with sha256 {code.file}; "
                "upload the archive with POST /api/v1/files first"
            )
        return {"kind": "file", "sha256": code.file}
    assert isinstance(code, CodeGit)
    from plinth.artifacts.gitcode import GitError, resolve_ref

    check_local_git(p, code.git, cfg)
    try:
        commit = resolve_ref(
            code.git, code.ref, timeout_s=cfg.code.git_timeout,
            protocols=tuple(cfg.code.git_protocols),
        )  # fmt: skip
    except GitError as e:
        raise Invalid(f"code.git: {e}") from None
    except Exception as e:  # noqa: BLE001 - a git binary problem, a timeout: still the user's input to fix
        raise Invalid(f"code.git: cannot resolve ref {code.ref!r} of {code.git!r}: {e}") from None
    return {"kind": "git", "url": code.git, "ref": code.ref, "commit": commit}


@dataclass(frozen=True)
class NewJob:
    """A validated submission: the workload's column values, ready to insert."""

    values: dict[str, Any]


def _prepare(
    session: Session,
    p: Principal,
    spec: JobSpec,
    code: dict[str, Any] | None,
    cfg: ServerConfig,
    nodes: tuple[NodeFree, ...],
    reason: str,
    what: str = "roles: the job's",
) -> NewJob:
    """Validate `spec` and build its row. `what` starts a refusal of its total demand:
    the field the client set and the workload's kind ("resources: the notebook's")."""
    gid, gname = _resolve_group(session, p, spec.group)
    max_runtime = spec.max_runtime or cfg.jobs.default_max_runtime
    # One narrow Core read serves the default and the caps check (an ORM get of the
    # whole row costs several times more on this hot path).
    group = (
        session.connection()
        .execute(select(Group.max_runtime_s, Group.max_job).where(Group.id == gid))
        .one_or_none()
    )
    cap = group.max_runtime_s if group is not None else None
    if spec.max_runtime is None and cap is not None:
        max_runtime = min(max_runtime, cap)  # the default never exceeds the group's cap
    if max_runtime > cfg.jobs.max_max_runtime:
        raise Invalid(
            f"max_runtime: {max_runtime:g}s is over this server's limit of "
            f"{cfg.jobs.max_max_runtime:g}s"
        )
    if spec.retries > cfg.jobs.max_retries:
        raise Invalid(f"retries: at most {cfg.jobs.max_retries} allowed, got {spec.retries}")
    priority = spec.priority or "normal"
    if spec.priority is not None and spec.priority not in cfg.scheduler.priority_names:
        raise Invalid(
            f"priority: unknown class {spec.priority!r}; this server has "
            f"{', '.join(cfg.scheduler.priority_names)}"
        )
    normal = spec.model_dump(mode="json")
    normal["group"] = gname
    normal["max_runtime"] = max_runtime
    normal["priority"] = priority
    reps = replica_demands(normal)
    why = unplaceable_reason(nodes, reps, cfg.scheduler.policy())
    if why is not None:
        raise Invalid(f"{what.split(':')[0]}: {why}")
    demand = _demand(reps)
    _check_group_caps(group, gname, max_runtime, demand, what)
    check_user_cap(session, p.user_id, p.user, demand, what)
    check_pending_limits(session, p.user_id, p.user, gid, gname,
                         cfg.scheduler.max_pending_per_user, cfg.scheduler.max_pending_per_group)
    values: dict[str, Any] = {
        "id": new_workload_id(JOB),
        "kind": JOB,
        "name": spec.name,
        "group_id": gid,
        "user_id": p.user_id,
        "state": State.PENDING.value,
        "reason": reason,
        "spec": normal,
        "code": code,
        "demand": demand.to_dict(),
        "attempt": 0,
        "failures": 0,
        "retries": spec.retries,
        "max_runtime_s": max_runtime,
        "priority": priority,
        "preemptions": 0,
    }
    return NewJob(values)


def insert_job(session: Session, new: NewJob) -> Workload:
    """Write a prepared job (pending) and its ``submitted`` event; return a detached copy.

    The only writes of a submission, so that the write transaction (and SQLite's write
    lock) lasts no longer than these two statements: validation, reads and resolving a
    git ref happen before, in ``prepare_job``/``prepare_rerun``."""
    values = dict(new.values)
    now = utcnow()
    values["created_at"] = values["queued_at"] = now
    reason = values["reason"]
    # Core INSERTs, the event right after its workload in the same transaction: this is
    # the submit hot path, and the ORM's unit of work costs more than the two statements.
    conn = session.connection()
    conn.execute(insert(Workload), [values])
    conn.execute(
        insert(Event),
        [{"workload_id": values["id"], "type": "submitted", "reason": reason, "time": now,
          "data": None}],
    )  # fmt: skip
    # A detached copy for the caller (rendering, the loop's hand-over); every column set.
    return Workload(**values)


def _check_group_caps(g: Any, gname: str, max_runtime: float, demand: Resources,
                      what: str) -> None:
    """Refuse at submit what the group's admin caps forbid (it could never start).

    ``g``: the group's ``max_runtime_s`` and ``max_job`` (a row), or None."""
    if g is None:  # pragma: no cover - resolved just before
        return
    if g.max_runtime_s is not None and max_runtime > g.max_runtime_s:
        raise Invalid(
            f"max_runtime: {max_runtime:g}s is over group {gname!r}'s cap of "
            f"{g.max_runtime_s:g}s; ask for less or ask an admin to raise the cap"
        )
    if g.max_job is not None:
        over = over_limit(demand, g.max_job)
        if over:
            raise Invalid(
                f"{what} total demand is over group {gname!r}'s largest-job cap "
                f"({'; '.join(over)}); ask for less"
            )


def prepare_job(
    session: Session, p: Principal, spec: JobSpec, cfg: ServerConfig, nodes: tuple[NodeFree, ...]
) -> NewJob:
    """Validate a submission (reads only); resolves a git ref to its commit now."""
    require_unscoped(p)
    code = _resolve_code(session, spec, p, cfg)
    why = f"submitted by {p.user}"
    if code and code["kind"] == "git":
        why += f" (git {code['ref']} = {code['commit'][:12]})"
    return _prepare(session, p, spec, code, cfg, nodes, why)


def submit_job(
    session: Session, p: Principal, spec: JobSpec, cfg: ServerConfig, nodes: tuple[NodeFree, ...]
) -> Workload:
    """Validate and queue a job in one transaction (``prepare_job`` + ``insert_job``)."""
    return insert_job(session, prepare_job(session, p, spec, cfg, nodes))


def prepare_rerun(
    session: Session, p: Principal, job_id: str, cfg: ServerConfig, nodes: tuple[NodeFree, ...]
) -> NewJob:
    """A new job with the same spec and the same recorded code (commit or file)."""
    require_unscoped(p)
    old = get_job(session, p, job_id)
    spec = JobSpec.model_validate(old.spec)
    if spec.group != p.group and not p.admin:
        spec = spec.model_copy(update={"group": None})
    if old.code and old.code["kind"] == "git":
        check_local_git(p, old.code["url"], cfg)
    why = f"rerun of {old.id} by {p.user}"
    if old.code and old.code["kind"] == "git":
        why += f" (recorded commit {old.code['commit'][:12]})"
    new = _prepare(session, p, spec, old.code, cfg, nodes, why)
    if old.template is not None:
        new.values["template"] = old.template  # the same expanded spec: the same version
    return new


def get_job(session: Session, p: Principal, job_id: str) -> Workload:
    """One job, if the caller may see it (else NotFound)."""
    return visible_workload(p, session.get(Workload, job_id), JOB, job_id)


def list_jobs(
    session: Session,
    p: Principal,
    state: str | None = None,
    group: str | None = None,
    limit: int = 100,
) -> list[Workload]:
    """Jobs the caller may see, newest first."""
    q = where_visible(p, select(Workload).where(Workload.kind == JOB))
    if state is not None:
        q = q.where(Workload.state == state)
    if group is not None:
        q = q.join(Group, Workload.group_id == Group.id).where(Group.name == group)
    q = q.order_by(Workload.created_at.desc(), Workload.id.desc()).limit(limit)
    return list(session.scalars(q))


def names_for(session: Session, ws: list[Workload]) -> dict[str, tuple[str, str]]:
    """workload id -> (group name, user name), for rendering."""
    gids = {w.group_id for w in ws}
    uids = {w.user_id for w in ws}
    groups = (
        dict(session.execute(select(Group.id, Group.name).where(Group.id.in_(gids))).all())
        if gids
        else {}
    )
    users = (
        dict(session.execute(select(User.id, User.name).where(User.id.in_(uids))).all())
        if uids
        else {}
    )
    return {w.id: (groups.get(w.group_id, ""), users.get(w.user_id, "")) for w in ws}


def cancel_job(session: Session, p: Principal, job_id: str) -> Workload:
    """Cancel a live job (its replicas get SIGTERM, then SIGKILL after the grace period,
    from the control loop). A finished job is returned unchanged."""
    w = get_job(session, p, job_id)
    if State(w.state) in FINAL:
        return w
    now = utcnow()
    new = _LifecycleCopy(w.state, w.reason, w.admitted_at, w.started_at, w.finished_at)
    try:
        t = transition(new, State.CANCELLED, f"cancelled by {p.user}", now)
    except InvalidTransition as e:  # pragma: no cover - every live state may be cancelled
        raise Conflict(str(e)) from None
    # Guarded by the live states, not the ORM's blind UPDATE by id: on PostgreSQL the
    # control loop may have finished the job since it was read; then it stays finished.
    done = session.execute(
        update(Workload)
        .where(Workload.id == w.id, Workload.state.in_([x.value for x in LIVE]))
        .values(state=new.state, reason=new.reason, finished_at=new.finished_at)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(w)
    if done != 1:
        return w
    ev.record_transition(session, w.id, t, now)
    return w


@dataclass
class _LifecycleCopy:
    state: str
    reason: str
    admitted_at: Any
    started_at: Any
    finished_at: Any


def job_events(session: Session, p: Principal, job_id: str) -> list[Any]:
    """The job's events, oldest first."""
    get_job(session, p, job_id)
    return ev.list_events(session, job_id)


def job_replicas(session: Session, p: Principal, job_id: str) -> list[Replica]:
    """Every replica attempt of the job, by attempt, role, replica."""
    get_job(session, p, job_id)
    return list(
        session.scalars(
            select(Replica)
            .where(Replica.workload_id == job_id)
            .order_by(Replica.attempt, Replica.role, Replica.replica)
        )
    )


@dataclass(frozen=True)
class LogChunk:
    data: bytes
    next_offset: int
    complete: bool  # the attempt has ended and everything up to its end was returned


ENDED_REPLICA_STATES = frozenset({"succeeded", "failed", "stopped", "lost"})


def read_log(
    session: Session,
    p: Principal,
    job_id: str,
    role: str,
    replica: int,
    attempt: int | None,
    offset: int,
) -> LogChunk:
    """Bytes of one replica attempt's log from `offset` (at most LOG_CHUNK_MAX)."""
    w = get_job(session, p, job_id)
    q = select(Replica).where(
        Replica.workload_id == w.id, Replica.role == role, Replica.replica == replica
    )
    if attempt is None:
        q = q.order_by(Replica.attempt.desc()).limit(1)
    else:
        q = q.where(Replica.attempt == attempt)
    r = session.scalars(q).first()
    if r is None:
        which = f"attempt {attempt} of " if attempt is not None else ""
        raise NotFound(
            f"no log for {which}replica {role}-{replica} of job {job_id!r} "
            "(it has not been started yet, or there is no such role/replica)"
        )
    ended = r.state in ENDED_REPLICA_STATES
    path = Path(r.log_path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(min(offset, size))
            data = f.read(LOG_CHUNK_MAX)
    except FileNotFoundError:
        size, data = 0, b""
    start = min(offset, size)
    nxt = start + len(data)
    return LogChunk(data, nxt, ended and nxt >= size)
