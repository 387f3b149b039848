"""The pure side of notebooks: which timeouts apply, and what activity means now.
Table-driven, with a fixed clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from plinth.config import NotebooksConfig
from plinth.services.errors import Invalid
from plinth.services.notebook_monitor import parse_activity
from plinth.services.notebook_policy import Action, Activity, decide, resolve_timeouts

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@dataclass
class Case:
    name: str
    now: float
    last: float | None
    busy: int = 0
    warned_idle: float | None = None
    warned_life: bool = False
    want: Action = Action.NONE


# Session started at T0, lifetime 1000 s, idle timeout 100 s, warnings at 80%.
CASES = [
    Case("fresh", now=10, last=None),
    Case("idle, before the warning", now=79, last=0),
    Case("idle, at the warning", now=80, last=0, want=Action.WARN_IDLE),
    Case("idle, warned already", now=90, last=0, warned_idle=0),
    Case("idle, timeout", now=100, last=0, warned_idle=0, want=Action.STOP_IDLE),
    Case("timeout even unwarned", now=150, last=0, want=Action.STOP_IDLE),
    Case("new idle period warns again", now=190, last=100, warned_idle=0,
         want=Action.WARN_IDLE),
    Case("busy kernel is never idle", now=500, last=0, busy=1),
    Case("activity resets idleness", now=150, last=120),
    Case("lifetime warning", now=800, last=790, want=Action.WARN_LIFETIME),
    Case("lifetime warned already", now=850, last=840, warned_life=True),
    Case("lifetime ends a busy session", now=1000, last=999, busy=2,
         want=Action.STOP_LIFETIME),
    Case("lifetime beats idleness", now=1200, last=0, want=Action.STOP_LIFETIME),
]


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_decide(c: Case) -> None:
    ends = at(1000)
    d = decide(
        at(c.now), T0, ends, 100.0, 0.8,
        Activity(None if c.last is None else at(c.last), kernels=c.busy, busy_kernels=c.busy),
        warned_idle_since=None if c.warned_idle is None else at(c.warned_idle),
        warned_lifetime_until=ends if c.warned_life else None,
    )  # fmt: skip
    assert d.action is c.want, d
    if c.want is not Action.NONE:
        assert d.reason


def test_reasons_say_why() -> None:
    d = decide(at(100), T0, at(1000), 100.0, 0.8, Activity(T0),
               warned_idle_since=None, warned_lifetime_until=None)  # fmt: skip
    assert "idle timeout of 1m40s reached" in d.reason
    d = decide(at(1000), T0, at(1000), 100.0, 0.8, Activity(at(999), 1, 1),
               warned_idle_since=None, warned_lifetime_until=None)  # fmt: skip
    assert "maximum lifetime of 16m40s reached" in d.reason
    d = decide(at(1000), T0, at(1000), 100.0, 0.8, Activity(at(999)), warned_idle_since=None,
               warned_lifetime_until=None, window_end=at(1000))  # fmt: skip
    assert d.action is Action.STOP_LIFETIME and "booked window ended" in d.reason


def test_timeouts_defaults_gpu_and_caps() -> None:
    cfg = NotebooksConfig.model_validate({
        "idle_timeout": "1h", "gpu_idle_timeout": "20m", "max_lifetime": "8h",
        "lifetime_cap": "2d", "groups": {"ads": {"gpu_idle_timeout": "5m", "lifetime_cap": "1d"}},
    })  # fmt: skip

    def resolve(group: str, gpu: int = 0, idle: float | None = None,
                life: float | None = None, gcap: float | None = None):  # fmt: skip
        return resolve_timeouts(cfg.policy(group), group, gpu=gpu, idle_timeout_s=idle,
                                max_lifetime_s=life, group_max_runtime_s=gcap,
                                server_max_runtime_s=30 * 86400)  # fmt: skip

    assert resolve("x").idle_timeout_s == 3600
    assert resolve("x", gpu=1).idle_timeout_s == 1200
    assert resolve("ads", gpu=1).idle_timeout_s == 300
    assert resolve("ads").lifetime_cap_s == 86400
    assert resolve("x", gcap=3600).lifetime_s == 3600  # the default never exceeds a cap
    assert resolve("x", idle=5).idle_timeout_s == 5
    with pytest.raises(Invalid, match="cap of 1d00h"):
        resolve("ads", life=2 * 86400)
    with pytest.raises(Invalid, match="max_idle_timeout"):
        resolve("x", idle=2 * 86400)


def test_parse_activity_reads_jupyter_servers_record() -> None:
    a = parse_activity(
        {"last_activity": "2026-05-01T10:00:00.000000Z", "kernels": 2},
        [{"execution_state": "busy", "connections": 1,
          "last_activity": "2026-05-01T10:05:00.000000Z"},
         {"execution_state": "idle", "connections": 0, "last_activity": None}],
    )  # fmt: skip
    assert (a.kernels, a.busy_kernels, a.connections) == (2, 1, 1)
    assert a.last_activity == at(300)
    assert parse_activity({}, []).last_activity is None
