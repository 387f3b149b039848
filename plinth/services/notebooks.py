"""Notebooks: JupyterLab sessions as workloads of kind ``notebook``.

A session is a one-replica workload (role ``main``) running
``python -m plinth.notebooks.launch`` with the resources it asked for, queued, admitted
and held under the user's quota like any job. It differs from a job in:

- its own Jupyter token (``spec.notebook.token``), given to jupyter-server as
  ``JUPYTER_TOKEN``; only the session's owner (and admins) read it back;
- its platform token (``PLINTH_TOKEN``, inherited by the kernels) acts as the user --
  never with admin rights, and it dies with the session (``services.auth``);
- its root directory is the user's persistent workspace (``services.workspaces``);
- an idle timeout and a maximum lifetime, enforced by
  ``services.notebook_monitor`` (the workload's ``max_runtime`` is only a backstop
  past the lifetime cap); ``extend`` pushes the lifetime within the cap;
- ``at``/``duration`` book a reservation for the user: the scheduler keeps the
  resources free for the window and admits the session at its start; it ends at
  the window's end.

What a session records in ``spec.notebook``: ``token``, ``idle_timeout`` and
``lifetime`` (seconds; ``lifetime`` grows with ``extend``), ``lifetime_cap``,
``workspace``, and for a booked one ``reservation``, ``window_start``,
``window_end``.
"""

from __future__ import annotations

import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from plinth.config import ServerConfig
from plinth.scheduler.cycle import format_duration
from plinth.services import events as ev
from plinth.services.admission import NodeFree
from plinth.services.auth import Principal, require_unscoped
from plinth.services.errors import Conflict, Invalid, NotFound
from plinth.services.jobs import ENDED_REPLICA_STATES, LogChunk, NewJob, _prepare, insert_job
from plinth.services.lifecycle import FINAL, LIVE, State, transition
from plinth.services.notebook_policy import resolve_timeouts
from plinth.services.specs import NAME_PATTERN, DurationS, JobSpec, Resources
from plinth.services.visibility import visible_workload, where_visible
from plinth.services.workspaces import workspace_dir
from plinth.store.models import Event, Group, Replica, Reservation, User, Workload, utcnow

__all__ = [
    "NOTEBOOK",
    "NotebookCreate",
    "NotebookExtend",
    "end_notebook",
    "ends_at",
    "extend_notebook",
    "get_notebook",
    "insert_notebook",
    "list_notebooks",
    "notebook_events",
    "notebook_url",
    "prepare_notebook",
    "read_notebook_log",
    "stop_notebook",
]

NOTEBOOK = "notebook"
ROLE = "main"
#: How far past its lifetime cap the workload's max_runtime backstop lies (seconds):
#: the monitor stops a session at its lifetime; the executor's deadline only if the
#: monitor could not.
BACKSTOP_S = 300.0
#: The earliest a booked window may start: a little in the past is "now".
_PAST_SLACK_S = 60.0


class NotebookCreate(BaseModel):
    """``POST /api/v1/notebooks``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="notebook", pattern=NAME_PATTERN)
    group: str | None = Field(default=None, pattern=NAME_PATTERN)
    resources: Resources = Resources()
    idle_timeout: DurationS | None = Field(
        default=None, description="stop after this long idle (default: the group's)"
    )
    max_lifetime: DurationS | None = Field(
        default=None, description="stop this long after the start (default: the group's)"
    )
    at: datetime | None = Field(
        default=None, description="book a window starting then (with `duration`)"
    )
    duration: DurationS | None = Field(
        default=None, description="the booked window's length (with `at`)"
    )
    priority: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,31}$")


class NotebookExtend(BaseModel):
    """``POST /api/v1/notebooks/{id}/extend``: add `by` to the session's lifetime."""

    model_config = ConfigDict(extra="forbid")

    by: DurationS


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _check_quota(session: Session, gid: int, gname: str, demand: dict[str, Any]) -> None:
    """Refuse a session its group could never hold: over the nominal quota plus what
    the group may borrow (only where the borrow limit is set: unset is unlimited)."""
    g = session.get(Group, gid)
    if g is None or g.borrow_limit is None:
        return
    over = []
    for k, lim in g.borrow_limit.items():
        most = float(g.quota.get(k, 0)) + float(lim)
        if k in demand and float(demand[k]) > most + (1e-9 if k == "cpu" else 0):
            over.append(f"{k} {float(demand[k]):g} > {most:g}")
    if over:
        raise Invalid(
            f"resources: the notebook needs more than group {gname!r} may ever hold "
            f"(its quota plus its borrow limit: {'; '.join(over)}; memory in MiB); "
            "ask for less or ask an admin to raise the quota"
        )


def prepare_notebook(
    session: Session,
    p: Principal,
    req: NotebookCreate,
    cfg: ServerConfig,
    nodes: tuple[NodeFree, ...],
    home: Path,
) -> NewJob:
    """Validate a session request (reads only) into a workload ready to insert."""
    require_unscoped(p)
    now = utcnow()
    gname = req.group or p.group
    gcap = session.scalar(select(Group.max_runtime_s).where(Group.name == gname))
    policy = cfg.notebooks.policy(gname)
    if (req.at is None) != (req.duration is None):
        raise Invalid("at/duration: book a window with both (e.g. at=10:00, duration=2h)")
    window: tuple[datetime, datetime] | None = None
    lifetime_ask = req.max_lifetime
    if req.at is not None and req.duration is not None:
        start = _aware(req.at)
        if start < now - timedelta(seconds=_PAST_SLACK_S):
            raise Invalid(f"at: {start.isoformat()} is in the past; book a window from now on")
        start = max(start, now)
        try:
            window = (start, start + timedelta(seconds=req.duration))
        except OverflowError:
            raise Invalid(f"at: {start.isoformat()} plus the duration is past year 9999; "
                          "book a nearer window") from None
        if lifetime_ask is not None and lifetime_ask < req.duration:
            window = (start, start + timedelta(seconds=lifetime_ask))
        lifetime_ask = (window[1] - window[0]).total_seconds()
    t = resolve_timeouts(
        policy, gname, gpu=req.resources.gpu, idle_timeout_s=req.idle_timeout,
        max_lifetime_s=lifetime_ask, group_max_runtime_s=gcap,
        server_max_runtime_s=cfg.jobs.max_max_runtime,
    )  # fmt: skip
    token = secrets.token_urlsafe(32)
    workspace = workspace_dir(home, p.user)
    spec = JobSpec(
        name=req.name, group=req.group, max_runtime=t.lifetime_cap_s, retries=0,
        priority=req.priority,
        roles={ROLE: {
            "replicas": 1, "resources": req.resources,
            "command": [sys.executable, "-m", "plinth.notebooks.launch",
                        *cfg.notebooks.jupyter_args],
            "env": {"JUPYTER_TOKEN": token, "PLINTH_NOTEBOOK_DIR": str(workspace)},
        }},
    )  # fmt: skip
    why = f"notebook started by {p.user}"
    if window is not None:
        why = f"notebook booked by {p.user} for {window[0].isoformat(timespec='seconds')}"
    new = _prepare(session, p, spec, None, cfg, nodes, why, "resources: the notebook's")
    v = new.values
    _check_quota(session, v["group_id"], v["spec"]["group"], v["demand"])
    v["id"] = f"nb-{secrets.token_hex(6)}"
    v["kind"] = NOTEBOOK
    backstop = t.lifetime_cap_s + BACKSTOP_S
    v["max_runtime_s"] = backstop
    v["spec"]["max_runtime"] = backstop
    nb: dict[str, Any] = {
        "token": token, "idle_timeout": t.idle_timeout_s, "lifetime": t.lifetime_s,
        "lifetime_cap": t.lifetime_cap_s, "workspace": str(workspace),
    }  # fmt: skip
    if window is not None:
        rid = f"rsv-{secrets.token_hex(6)}"
        nb.update(reservation=rid, window_start=window[0].isoformat(),
                  window_end=window[1].isoformat())  # fmt: skip
        # Read by the scheduler (services.scheduling): the session waits for its window.
        v["spec"]["reservation"] = rid
    v["spec"]["notebook"] = nb
    return new


def insert_notebook(session: Session, p: Principal, new: NewJob) -> Workload:
    """Write a prepared session (and its reservation, when booked)."""
    w = insert_job(session, new)
    nb = w.spec["notebook"]
    if "reservation" in nb:
        session.add(Reservation(
            id=nb["reservation"], group_id=None, user_id=p.user_id,
            resources={k: w.demand[k] for k in ("cpu", "memory", "gpu")}, node=None,
            start=datetime.fromisoformat(nb["window_start"]),
            end=datetime.fromisoformat(nb["window_end"]),
            reason=f"notebook {w.id} booked by {p.user}", created_by=p.user,
        ))  # fmt: skip
        session.flush()
    return w


def get_notebook(session: Session, p: Principal, nid: str) -> Workload:
    """One session, if the caller may see it (its group's members, admins)."""
    return visible_workload(p, session.get(Workload, nid), NOTEBOOK, nid)


def list_notebooks(
    session: Session, p: Principal, state: str | None = None, limit: int = 100
) -> list[Workload]:
    """Sessions the caller may see, newest first."""
    q = where_visible(p, select(Workload).where(Workload.kind == NOTEBOOK))
    if state is not None:
        q = q.where(Workload.state == state)
    q = q.order_by(Workload.created_at.desc(), Workload.id.desc()).limit(limit)
    return list(session.scalars(q))


def may_use(p: Principal, w: Workload) -> bool:
    """Whether `p` may open the session (read its token): its owner, or an admin."""
    return p.admin or (p.user_id == w.user_id and p.workload_id in (None, w.id))


def current_replica(session: Session, w: Workload) -> Replica | None:
    """The session's replica of the current attempt, if started."""
    return session.scalars(
        select(Replica).where(Replica.workload_id == w.id, Replica.attempt == w.attempt)
        .order_by(Replica.id.desc()).limit(1)
    ).first()  # fmt: skip


def notebook_url(host: str, port: int, token: str | None = None) -> str:
    """The JupyterLab URL of a session (with its token when given)."""
    base = f"http://{host}:{port}/lab"
    return f"{base}?token={token}" if token else base


def ends_at(w: Workload) -> datetime | None:
    """When the session's lifetime ends (None until it has started)."""
    if w.started_at is None:
        return None
    nb = w.spec.get("notebook") or {}
    end = w.started_at + timedelta(seconds=float(nb.get("lifetime", w.max_runtime_s)))
    if nb.get("window_end"):
        end = min(end, datetime.fromisoformat(nb["window_end"]))
    return end


def end_notebook(session: Session, w: Workload, state: State, reason: str,
                 now: datetime) -> bool:  # fmt: skip
    """Move live session `w` to final `state` with `reason` (guarded: a session that
    ended meanwhile stays as it ended); its replica is stopped by the control loop's
    next observe, and its booked window is released. True when this call ended it."""
    new = _Copy(w.state, w.reason, w.admitted_at, w.started_at, w.finished_at)
    t = transition(new, state, reason, now)
    done = session.execute(
        update(Workload)
        .where(Workload.id == w.id, Workload.state.in_([x.value for x in LIVE]))
        .values(state=new.state, reason=new.reason, finished_at=new.finished_at)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(w)
    if done != 1:
        return False
    ev.record_transition(session, w.id, t, now)
    rid = (w.spec.get("notebook") or {}).get("reservation")
    if rid:
        r = session.get(Reservation, rid)
        if r is not None and r.end > now:
            r.end = max(now, r.start)  # the window's capacity is free from now on
    return True


class _Copy:
    def __init__(self, state: str, reason: str, admitted_at: Any, started_at: Any,
                 finished_at: Any) -> None:  # fmt: skip
        self.state, self.reason = state, reason
        self.admitted_at, self.started_at, self.finished_at = admitted_at, started_at, finished_at


def stop_notebook(session: Session, p: Principal, nid: str) -> Workload:
    """Stop a session (jupyter-server gets SIGTERM: it shuts its kernels down; SIGKILL
    after the grace period). A finished session is returned unchanged."""
    w = get_notebook(session, p, nid)
    if State(w.state) in FINAL:
        return w
    end_notebook(session, w, State.CANCELLED, f"stopped by {p.user}", utcnow())
    return w


def extend_notebook(session: Session, p: Principal, nid: str, by_s: float) -> Workload:
    """Push a live session's lifetime by `by_s` seconds, within its cap."""
    w = get_notebook(session, p, nid)
    if State(w.state) in FINAL:
        raise Conflict(f"notebook {nid!r} has ended ({w.state}): start a new one")
    nb = dict(w.spec.get("notebook") or {})
    if nb.get("window_end"):
        raise Conflict(
            f"notebook {nid!r} runs in a booked window (until {nb['window_end']}): "
            "book a later window for more time"
        )
    new_life = float(nb["lifetime"]) + by_s
    cap = float(nb["lifetime_cap"])
    if new_life > cap + 1e-6:
        left = max(0.0, cap - float(nb["lifetime"]))
        raise Invalid(
            f"by: the lifetime would be {format_duration(new_life)}, over the cap of "
            f"{format_duration(cap)} for group {w.spec.get('group')!r}; at most "
            f"{format_duration(left)} more"
        )
    nb["lifetime"] = new_life
    spec = dict(w.spec)
    spec["notebook"] = nb
    w.spec = spec
    ev.record(session, w.id, "extended",
              f"lifetime extended by {format_duration(by_s)} to {format_duration(new_life)} "
              f"by {p.user}", utcnow(), lifetime=new_life)  # fmt: skip
    session.flush()
    return w


def notebook_events(session: Session, p: Principal, nid: str) -> list[Event]:
    get_notebook(session, p, nid)
    return ev.list_events(session, nid)


def read_notebook_log(session: Session, p: Principal, nid: str, offset: int,
                      limit: int = 4 * 1024 * 1024) -> LogChunk:  # fmt: skip
    """JupyterLab's output (the latest attempt's log) from `offset`."""
    w = get_notebook(session, p, nid)
    r = current_replica(session, w)
    if r is None:
        raise NotFound(f"notebook {nid!r} has not been started yet: no log")
    try:
        with open(r.log_path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(min(offset, size))
            data = f.read(limit)
    except FileNotFoundError:
        size, data = 0, b""
    nxt = min(offset, size) + len(data)
    return LogChunk(data, nxt, r.state in ENDED_REPLICA_STATES and nxt >= size)


def names(session: Session, ws: list[Workload]) -> dict[int, str]:
    """user id -> name for rendering."""
    uids = {w.user_id for w in ws}
    if not uids:
        return {}
    return dict(session.execute(select(User.id, User.name).where(User.id.in_(uids))).all())
