"""Deployments: a registered model served by replicas of ``python -m plinth.serve``.

A deployment is a workload of kind ``deployment`` (role ``replica``, and ``canary``
when it splits traffic with another version), scheduled
under its group's quota like any job: it waits in the queue while the quota is busy
and holds its replicas' resources while it runs. Unlike a job it is long-running:

* a replica that dies is started again in place (``services.deployment_restarts``),
  the other replicas keep serving, and the workload stays ``running``;
* it follows its model's alias (``services.deployment_follower``): a new version is
  loaded beside the serving one in every replica, warmed up and swapped in; moving the
  alias back rolls back; deltas published for the serving version are applied live;
* ``POST /api/v1/deployments/{name}/predict`` balances requests over its replicas and
  retries another replica when one is restarting (``services.deployment_traffic``).

The spec it runs is a job spec with one more key, ``deployment``::

    {"model": NAME, "model_id": ID, "alias": ALIAS | None, "version": N (at create),
     "control_token": ..., "serve_args": [...],
     "canary": {"alias", "version"}, "canary_percent": P}      (with a canary only)

The control token guards the replicas' control calls; it is never shown (the API's
output is built field by field, and deployments are not listed as jobs).

A deployment's name is unique among live deployments (every group's: the name is its
address under ``/api/v1/deployments/{name}``). Deleting one cancels its workload: its
replicas stop and its resources go back to the group's quota.

Where packages live: the serving replicas read a version's package from their own
working directory (``.plinth-models/v<N>``, copied read-only from the registry by
``stage_version``), so an isolated replica never needs the server's 0700 home.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from plinth.config import ServerConfig
from plinth.services import events as ev
from plinth.services import jobs as jobs_svc
from plinth.services import models as models_svc
from plinth.services.admission import NodeFree
from plinth.services.auth import Principal, require_unscoped
from plinth.services.errors import Conflict, Invalid, NotFound
from plinth.services.lifecycle import FINAL, LIVE, State, transition
from plinth.services.specs import NAME_PATTERN, JobSpec, Resources, _Strict
from plinth.services.visibility import where_visible
from plinth.store.models import (
    Group,
    ModelAlias,
    ModelDelta,
    ModelVersion,
    QuotaExpansion,
    Replica,
    Workload,
    utcnow,
)

__all__ = [
    "CANARY",
    "DEPLOYMENT",
    "ROLE",
    "DeploymentCreate",
    "DeploymentScale",
    "Target",
    "create_deployment",
    "delete_deployment",
    "deployment_events",
    "deployment_replicas",
    "get_deployment",
    "list_deployments",
    "running_addresses",
    "serve_command",
    "split_traffic",
    "stage_delta",
    "stage_for_launch",
    "stage_version",
    "target_of",
]

DEPLOYMENT = "deployment"
ROLE = "replica"
CANARY = "canary"  # the role of a canary's replicas (another version of the same model)
MODELS_DIR = ".plinth-models"  # in the working directory: the staged packages
MAX_DEPLOYMENT_REPLICAS = 64


class DeploymentCreate(_Strict):
    """A deployment as created through the API (see docs/deployments.md)."""

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(
        min_length=3, max_length=200, pattern=r"^[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9_-]*$",
        description="NAME@ALIAS (followed: alias moves swap the served version) or "
                    "NAME@VERSION (pinned)",
    )
    replicas: int = Field(default=1, ge=1, le=MAX_DEPLOYMENT_REPLICAS)
    resources: Resources = Resources()
    group: str | None = Field(default=None, pattern=NAME_PATTERN)
    priority: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    canary: str | None = Field(
        default=None, max_length=200, pattern=r"^[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9_-]*$",
        description="another version of the same model (NAME@ALIAS or NAME@VERSION) served "
                    "by canary_replicas replicas, which get canary_percent of the requests",
    )
    canary_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 10.0
    canary_replicas: Annotated[int, Field(ge=1, le=MAX_DEPLOYMENT_REPLICAS)] = 1
    max_batch_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    max_delay_ms: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)] = 0.0


class DeploymentScale(_Strict):
    replicas: int = Field(ge=1, le=MAX_DEPLOYMENT_REPLICAS)


class TrafficSplit(_Strict):
    """The share of requests (percent) the canary's replicas get."""

    canary_percent: float = Field(ge=0, le=100, allow_inf_nan=False)


@dataclass(frozen=True)
class Target:
    """What a deployment's replicas should serve now: version ``version``, its package
    at ``path`` (relative to PLINTH_HOME)."""

    version: int
    path: str


def serve_command(info: dict[str, Any], version: int) -> list[str]:
    """The replica's command serving `version` (staged in its working directory)."""
    return ["python", "-m", "plinth.serve", f"{MODELS_DIR}/v{version}",
            "--name", info["model"], "--version", str(version), "--host", "127.0.0.1",
            *info.get("serve_args", [])]


def staged_dir(workdir: Path, version: int) -> Path:
    return Path(workdir) / MODELS_DIR / f"v{version}"


def _copy_read_only(src: Path, dest: Path) -> Path:
    """Copy `src` to `dest` (atomically: a temporary name, then a rename), read-only for
    everyone: the replica reads it, never changes it. Nothing when `dest` exists."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(dest.parent, 0o755)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
    shutil.copytree(src, tmp)
    for root, dirs, files in os.walk(tmp):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o444)
    os.chmod(tmp, 0o755)
    try:
        tmp.rename(dest)
    except OSError:  # staged meanwhile by another thread
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def stage_version(home: Path, workdir: Path, version: int, path: str) -> Path:
    """Copy version `version`'s package (registry `path`) into `workdir`; its path."""
    return _copy_read_only(Path(home) / path, staged_dir(workdir, version))


def stage_delta(home: Path, workdir: Path, version: int, seq: int, path: str) -> Path:
    return _copy_read_only(Path(home) / path,
                           Path(workdir) / MODELS_DIR / f"v{version}-delta-{seq:06d}")


def ref_of(info: dict[str, Any], role: str = ROLE) -> dict[str, Any]:
    """``{"alias", "version"}`` the replicas of `role` serve: the deployment's model
    reference, or its canary's."""
    if role == CANARY:
        return info[CANARY]
    return {"alias": info.get("alias"), "version": info["version"]}


def target_of(session: Session, info: dict[str, Any], role: str = ROLE) -> Target | None:
    """The version the replicas of `role` should serve now: the alias's (followed), else
    the version given at create. None when the version is gone."""
    ref = ref_of(info, role)
    number = ref["version"]
    if ref.get("alias"):
        a = session.scalar(select(ModelAlias.version).where(
            ModelAlias.model_id == info["model_id"], ModelAlias.alias == ref["alias"]))
        if a is not None:
            number = a
    path = session.scalar(select(ModelVersion.path).where(
        ModelVersion.model_id == info["model_id"], ModelVersion.version == number))
    return None if path is None else Target(number, path)


def deltas_of(session: Session, model_id: int, version: int,
              after: int) -> list[tuple[int, str]]:
    """Deltas of a version after `after`, in order: ``[(seq, path)]``."""
    rows = session.execute(
        select(ModelDelta.seq, ModelDelta.path)
        .join(ModelVersion, ModelDelta.version_id == ModelVersion.id)
        .where(ModelVersion.model_id == model_id, ModelVersion.version == version,
               ModelDelta.seq > after)
        .order_by(ModelDelta.seq)).all()
    return [(int(s), str(p)) for s, p in rows]


# ---------------------------------------------------------------------------- create


def _check_quota_could_fit(session: Session, gid: int, gname: str,
                           demand: dict[str, Any]) -> None:
    """Refuse (422) a deployment its group could never hold: over its quota plus its
    borrow limit and active or coming expansions (no limit: it may borrow anything)."""
    g = session.get(Group, gid)
    if g is None or g.borrow_limit is None:
        return
    now = utcnow()
    extra: dict[str, float] = {"cpu": 0.0, "memory": 0.0, "gpu": 0.0}
    for add in session.scalars(select(QuotaExpansion.add).where(
            QuotaExpansion.group_id == gid, QuotaExpansion.end > now)):
        for k in extra:
            extra[k] += float((add or {}).get(k, 0))
    over = []
    for k in ("cpu", "memory", "gpu"):
        most = float(g.quota.get(k, 0)) + float(g.borrow_limit.get(k, 0)) + extra[k]
        if float(demand[k]) > most + 1e-9:
            over.append(f"{k} {float(demand[k]):g} > {most:g}")
    if over:
        raise Invalid(
            f"resources: the deployment needs more than group {gname!r} "
            f"can ever hold ({'; '.join(over)}; memory in MiB: its quota plus borrow "
            "limit); ask for fewer replicas or smaller ones, or ask an admin for more quota"
        )


def prepare_deployment(session: Session, p: Principal, req: DeploymentCreate,
                       cfg: ServerConfig, nodes: tuple[NodeFree, ...]) -> jobs_svc.NewJob:
    """Validate a deployment (reads only): the model and alias exist and are the
    caller's to use, the name is free, the resources fit nodes, caps and quota."""
    require_unscoped(p)
    name, _, which = req.model.partition("@")
    try:
        v = models_svc.resolve(session, p, req.model)
    except NotFound as e:
        raise Invalid(f"model: {e}; see `plinth model list` / `plinth model get {name}`") \
            from None
    alias = None if which.isdigit() else which
    canary = None
    if req.canary is not None:
        cname, _, cwhich = req.canary.partition("@")
        if cname != name:
            raise Invalid(f"canary: {req.canary!r} must be a version of the same model "
                          f"{name!r}, e.g. {name}@canary")
        try:
            cv = models_svc.resolve(session, p, req.canary)
        except NotFound as e:
            raise Invalid(f"canary: {e}; see `plinth model get {name}`") from None
        canary = {"alias": None if cwhich.isdigit() else cwhich, "version": cv.version}
    live = session.scalar(select(func.count()).select_from(Workload).where(
        Workload.kind == DEPLOYMENT, Workload.name == req.name,
        Workload.state.in_([s.value for s in LIVE])))
    if live:
        raise Conflict(f"a deployment named {req.name!r} already exists; delete it first "
                       "(`plinth deploy delete`) or choose another name")
    info: dict[str, Any] = {
        "model": name, "model_id": v.model_id, "alias": alias, "version": v.version,
        "control_token": secrets.token_urlsafe(24),
        "serve_args": ["--max-batch-rows", str(req.max_batch_rows),
                       "--max-delay-ms", f"{req.max_delay_ms:g}"],
    }
    env = {"PLINTH_SERVE_CONTROL_TOKEN": info["control_token"]}
    roles: dict[str, Any] = {ROLE: {"replicas": req.replicas, "resources": req.resources,
                                    "command": serve_command(info, v.version), "env": env}}
    if canary is not None:
        info[CANARY] = canary
        info["canary_percent"] = req.canary_percent
        roles[CANARY] = {"replicas": req.canary_replicas, "resources": req.resources,
                         "command": serve_command(info, canary["version"]), "env": env}
    spec = JobSpec(
        name=req.name, group=req.group, priority=req.priority,
        max_runtime=cfg.jobs.max_max_runtime, roles=roles,
    )  # fmt: skip
    gid, gname = jobs_svc._resolve_group(session, p, spec.group)
    cap = session.scalar(select(Group.max_runtime_s).where(Group.id == gid))
    if cap is not None:  # runs until deleted, or the longest the group allows
        spec = spec.model_copy(update={"max_runtime": min(cfg.jobs.max_max_runtime, cap)})
    how = f"@{alias} (now version {v.version})" if alias else f" version {v.version}"
    new = jobs_svc._prepare(session, p, spec, None, cfg, nodes,
                            f"deployment of {name}{how} created by {p.user}",
                            "resources: the deployment's")
    _check_quota_could_fit(session, gid, gname, new.values["demand"])
    new.values["id"] = jobs_svc.new_workload_id("deploy")
    new.values["kind"] = DEPLOYMENT
    new.values["spec"]["deployment"] = info
    return new


def create_deployment(db: Any, loop: Any, p: Principal, new: jobs_svc.NewJob) -> Workload:
    """Queue a prepared deployment (admitted at once when the quota allows)."""
    with loop.submitting() as admit, db.session() as s:
        w = jobs_svc.insert_job(s, new)
        admitted = admit(s, w, p.user) if admit is not None else None
    if admitted is None:
        loop.wake(w)
    else:
        loop.start_admitted(admitted)
    with db.read() as s:
        return get_deployment(s, p, w.name, w.id)


# ---------------------------------------------------------------------------- read


def get_deployment(session: Session, p: Principal, name: str,
                   workload_id: str | None = None) -> Workload:
    """The deployment named `name` the caller may see: the live one, else the newest."""
    q = where_visible(p, select(Workload).where(Workload.kind == DEPLOYMENT, Workload.name == name))
    if workload_id is not None:
        q = q.where(Workload.id == workload_id)
    rows = list(session.scalars(q.order_by(Workload.created_at.desc(),
                                           Workload.id.desc()).limit(20)))
    live = [w for w in rows if State(w.state) in LIVE]
    if live:
        return live[0]
    if rows:
        return rows[0]
    raise NotFound(f"deployment {name!r} not found; see `plinth deploy list`")


def list_deployments(session: Session, p: Principal, all_: bool = False,
                     limit: int = 100) -> list[Workload]:
    """Deployments the caller may see, newest first (live ones only unless `all_`)."""
    q = where_visible(p, select(Workload).where(Workload.kind == DEPLOYMENT))
    if not all_:
        q = q.where(Workload.state.in_([s.value for s in LIVE]))
    return list(session.scalars(q.order_by(Workload.created_at.desc(),
                                           Workload.id.desc()).limit(limit)))


def deployment_replicas(session: Session, w: Workload) -> list[Replica]:
    """The replicas of the deployment's current attempt, by role and replica number."""
    return list(session.scalars(
        select(Replica).where(Replica.workload_id == w.id, Replica.attempt == w.attempt)
        .order_by(Replica.role.desc(), Replica.replica)))


def running_addresses(session: Session, workload_id: str,
                      role: str = ROLE) -> list[str]:
    """``host:port`` of each running replica of `role` of the deployment's current
    attempt."""
    rows = session.execute(
        select(Replica.host, Replica.port)
        .join(Workload, Replica.workload_id == Workload.id)
        .where(Workload.id == workload_id, Replica.attempt == Workload.attempt,
               Replica.role == role, Replica.state == "running")
        .order_by(Replica.replica)).all()
    return [f"{h}:{p}" for h, p in rows]


def deployment_events(session: Session, w: Workload) -> list[Any]:
    return ev.list_events(session, w.id)


def serving_info(session: Session, w: Workload) -> dict[str, Any]:
    """What it should serve now (``target_version``) and the alias it follows."""
    info = w.spec.get(DEPLOYMENT) or {}
    t = target_of(session, info) if info else None
    out: dict[str, Any] = {"model": info.get("model"), "alias": info.get("alias"),
                           "target_version": None if t is None else t.version, CANARY: None}
    if info.get(CANARY):
        c = target_of(session, info, CANARY)
        out[CANARY] = {"alias": info[CANARY]["alias"], "percent": info["canary_percent"],
                       "version": None if c is None else c.version,
                       "replicas": w.spec["roles"][CANARY]["replicas"]}
    return out


# ---------------------------------------------------------------------------- change


def delete_deployment(session: Session, p: Principal, name: str) -> Workload:
    """Cancel the live deployment `name`: its replicas get SIGTERM (SIGKILL after the
    grace period) from the control loop; its resources return to the quota once they
    have exited. A finished one is returned unchanged."""
    require_unscoped(p)
    w = get_deployment(session, p, name)
    if State(w.state) in FINAL:
        return w
    now = utcnow()
    t = transition(w, State.CANCELLED, f"deleted by {p.user}", now)
    done = session.execute(
        update(Workload)
        .where(Workload.id == w.id, Workload.state.in_([x.value for x in LIVE]))
        .values(state=w.state, reason=w.reason, finished_at=w.finished_at)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(w)
    if done == 1:
        ev.record_transition(session, w.id, t, now)
    return w


def scale_deployment(session: Session, p: Principal, name: str, replicas: int,
                     cfg: ServerConfig, nodes: tuple[NodeFree, ...]) -> Workload:
    """Change the number of replicas of a running deployment. It is admitted again with
    its new size under the quota: its replicas stop and start again (it waits in the
    queue, with its original queue time, when the quota cannot hold the new size)."""
    require_unscoped(p)
    w = get_deployment(session, p, name)
    if State(w.state) in FINAL:
        raise Conflict(f"deployment {name!r} is {w.state}; create it again instead")
    if w.state != State.RUNNING.value or w.preempted_at is not None:
        raise Conflict(f"deployment {name!r} is {w.state} (not running yet, or being "
                       "restarted); scale it once it runs, or delete and create it again")
    spec = dict(w.spec)
    role = dict(spec["roles"][ROLE])
    if role["replicas"] == replicas:
        return w
    role["replicas"] = replicas
    spec["roles"] = {**spec["roles"], ROLE: role}
    reps = jobs_svc.replica_demands(spec)
    from plinth.services.admission import unplaceable_reason

    why = unplaceable_reason(nodes, reps, cfg.scheduler.policy())
    if why is not None:
        raise Invalid(f"replicas: {why}")
    demand = {"cpu": sum(r.cpu for r in reps), "memory": sum(r.memory for r in reps),
              "gpu": sum(r.gpu for r in reps)}
    _check_quota_could_fit(session, w.group_id, spec.get("group", ""), demand)
    now = utcnow()
    before = w.spec["roles"][ROLE]["replicas"]
    w.spec, w.demand = spec, demand
    why_text = f"scaled from {before} to {replicas} replica(s) by {p.user}"
    # Through the preemption path: its replicas stop, then it is requeued (queue time
    # kept, no retry used) and admitted again with the new size.
    w.preempted_at = now
    ev.record(session, w.id, "scaled", why_text, now, replicas=replicas, before=before)
    session.flush()
    return w


def stage_for_launch(db: Any, home: Path, workdir: Path, spec: dict[str, Any]) -> None:
    """Before a deployment's replicas start: copy the versions their commands name into
    their working directory (the follower moves them to the alias's version after)."""
    info = spec[DEPLOYMENT]
    for role in spec["roles"]:
        number = ref_of(info, role)["version"]
        with db.read() as s:
            path = s.scalar(select(ModelVersion.path).where(
                ModelVersion.model_id == info["model_id"], ModelVersion.version == number))
        if path is None:
            raise RuntimeError(f"version {number} of model {info['model']!r} is gone")
        stage_version(home, workdir, number, path)


def split_traffic(session: Session, p: Principal, name: str, percent: float) -> Workload:
    """Set the share of requests the canary gets (no restart: the endpoint reads it)."""
    require_unscoped(p)
    w = get_deployment(session, p, name)
    if State(w.state) in FINAL:
        raise Conflict(f"deployment {name!r} is {w.state}")
    info = dict(w.spec.get(DEPLOYMENT) or {})
    if not info.get(CANARY):
        raise Invalid(f"deployment {name!r} has no canary; create it with one "
                      "(--canary NAME@ALIAS) to split its traffic")
    before = info["canary_percent"]
    info["canary_percent"] = percent
    w.spec = {**w.spec, DEPLOYMENT: info}
    ev.record(session, w.id, "traffic_split",
              f"canary share {before:g}% -> {percent:g}% by {p.user}", utcnow(),
              before=before, percent=percent)
    session.flush()
    return w
