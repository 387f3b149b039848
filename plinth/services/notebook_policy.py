"""Notebook sessions' timeouts: which apply (defaults and caps), and what a session's
activity means now (warn, stop, or nothing). Pure: no I/O, no clock reads.

Idleness follows jupyterhub-idle-culler: it comes from jupyter-server's own activity
record (``/api/status``'s ``last_activity``; each kernel's ``execution_state``), never
from CPU use. A busy kernel is never idle. Open connections (a browser tab left open)
do not count as activity: only what the server records as activity does, so a
forgotten tab does not hold a GPU.

A session's clock::

    started ──────── idle_since ──── warn (warn_fraction of idle_timeout) ── stop
       │                                                                     (idle)
       └──────────── warn (warn_fraction of lifetime) ──────────── ends_at ─ stop
                                                                         (lifetime)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from plinth.config import NotebookPolicy
from plinth.scheduler.cycle import format_duration
from plinth.services.errors import Invalid

__all__ = [
    "Action",
    "Activity",
    "Decision",
    "Timeouts",
    "decide",
    "resolve_timeouts",
]


@dataclass(frozen=True)
class Timeouts:
    """A session's idle timeout, lifetime, and the most its lifetime may be extended
    to (seconds)."""

    idle_timeout_s: float
    lifetime_s: float
    lifetime_cap_s: float


def resolve_timeouts(
    policy: NotebookPolicy,
    group: str,
    *,
    gpu: int,
    idle_timeout_s: float | None,
    max_lifetime_s: float | None,
    group_max_runtime_s: float | None,
    server_max_runtime_s: float,
) -> Timeouts:
    """The session's timeouts: what it asked for, else the group's defaults (GPU
    sessions: ``gpu_idle_timeout`` when set). Raises Invalid naming the cap exceeded."""
    cap = min(x for x in (policy.lifetime_cap, group_max_runtime_s, server_max_runtime_s)
              if x is not None)  # fmt: skip
    default_idle = policy.idle_timeout
    if gpu > 0 and policy.gpu_idle_timeout is not None:
        default_idle = policy.gpu_idle_timeout
    idle = idle_timeout_s if idle_timeout_s is not None else default_idle
    assert idle is not None  # the server's defaults are always set
    max_idle = policy.max_idle_timeout
    if max_idle is not None and idle > max_idle:
        raise Invalid(
            f"idle_timeout: {format_duration(idle)} is over group {group!r}'s cap of "
            f"{format_duration(max_idle)} (notebooks.max_idle_timeout); ask for less"
        )
    life = max_lifetime_s if max_lifetime_s is not None else min(policy.max_lifetime or cap, cap)
    if life > cap:
        raise Invalid(
            f"max_lifetime: {format_duration(life)} is over group {group!r}'s cap of "
            f"{format_duration(cap)} (the lowest of notebooks.lifetime_cap, the group's "
            "max_runtime and the server's jobs.max_max_runtime); ask for less"
        )
    return Timeouts(float(idle), float(life), float(cap))


@dataclass(frozen=True)
class Activity:
    """What jupyter-server reports: its ``last_activity`` and its kernels' states."""

    last_activity: datetime | None
    kernels: int = 0
    busy_kernels: int = 0
    connections: int = 0


class Action(StrEnum):
    NONE = "none"
    WARN_IDLE = "idle_warning"
    WARN_LIFETIME = "lifetime_warning"
    STOP_IDLE = "idle_timeout"
    STOP_LIFETIME = "max_lifetime"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    idle_since: datetime | None = None  # the idle period's start (None: busy)


def decide(
    now: datetime,
    started_at: datetime,
    ends_at: datetime,
    idle_timeout_s: float,
    warn_fraction: float,
    activity: Activity,
    *,
    warned_idle_since: datetime | None,
    warned_lifetime_until: datetime | None,
    window_end: datetime | None = None,
) -> Decision:
    """What to do about a running session now.

    ``warned_idle_since``: the start of the idle period already warned about (None:
    none); ``warned_lifetime_until``: the ``ends_at`` already warned about. A warning is
    given once per idle period and once per lifetime (an ``extend`` starts a new one).
    ``window_end``: a booked session's window end (its reason then names the window).
    The lifetime wins over idleness: a session past its end stops whatever it does."""
    if now >= ends_at:
        if window_end is not None and ends_at >= window_end:
            return Decision(Action.STOP_LIFETIME,
                            f"the booked window ended at {window_end.isoformat(timespec='seconds')}"
                            "; stopping the session")  # fmt: skip
        lifetime = format_duration((ends_at - started_at).total_seconds())
        return Decision(Action.STOP_LIFETIME,
                        f"maximum lifetime of {lifetime} reached; stopping the session")
    idle_since: datetime | None = None
    if activity.busy_kernels == 0:
        idle_since = max(activity.last_activity or started_at, started_at)
    life_warn_at = started_at + (ends_at - started_at) * warn_fraction
    if now >= life_warn_at and warned_lifetime_until != ends_at:
        left = format_duration(max(0.0, (ends_at - now).total_seconds()))
        return Decision(Action.WARN_LIFETIME,
                        f"this session reaches its maximum lifetime in {left} "
                        f"(at {ends_at.isoformat(timespec='seconds')}); save your work, or "
                        "extend it with `plinth notebook extend`", idle_since)  # fmt: skip
    if idle_since is None:
        return Decision(Action.NONE)
    idle_for = (now - idle_since).total_seconds()
    timeout = format_duration(idle_timeout_s)
    if idle_for >= idle_timeout_s:
        return Decision(Action.STOP_IDLE,
                        f"idle for {format_duration(idle_for)} (no kernel busy, no "
                        f"activity since {idle_since.isoformat(timespec='seconds')}): idle "
                        f"timeout of {timeout} reached; stopping the session", idle_since)
    if idle_for >= idle_timeout_s * warn_fraction and warned_idle_since != idle_since:
        stop_at = idle_since + timedelta(seconds=idle_timeout_s)
        return Decision(Action.WARN_IDLE,
                        f"idle for {format_duration(idle_for)}: the session stops at "
                        f"{stop_at.isoformat(timespec='seconds')} (idle timeout {timeout}) "
                        "unless something runs in it", idle_since)  # fmt: skip
    return Decision(Action.NONE, idle_since=idle_since)
