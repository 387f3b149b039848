"""The notebook monitor: a background service that reads each running session's
activity from its jupyter-server and enforces idle timeouts and lifetimes.

Every ``notebooks.check_interval`` seconds, for each running session:

1. ``GET /api/status`` (its ``last_activity``) and ``GET /api/kernels?no_track_activity=1``
   (each kernel's ``execution_state``; the flag keeps the monitor's own reads from
   counting as activity), with the session's token;
2. not answering: a session not yet ready past ``notebooks.start_timeout`` fails with
   the tail of its log (its resources return); otherwise it is asked again next time;
3. answering for the first time: event ``ready`` (``--wait`` waits for it);
4. ``notebook_policy.decide``: a warning is an event and the workspace's notice file
   (a channel that needs no kernel: the file browser shows it); a stop moves the
   session to ``timed_out`` with the reason, and the control loop's observe sends
   jupyter-server SIGTERM (it shuts its kernels down), then SIGKILL after the grace.

The monitor keeps only what it can lose: the last reading per session (shown by
``GET /api/v1/notebooks/{id}``) and which warnings it gave. A restart re-reads the
events and goes on; the sessions themselves keep running (the executor re-adopts
them), reachable at the same address with the same token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from plinth.config import ServerConfig
from plinth.services import events as ev
from plinth.services.lifecycle import State
from plinth.services.notebook_policy import Action, Activity, decide
from plinth.services.notebooks import NOTEBOOK, end_notebook, ends_at, notebook_url
from plinth.services.workspaces import write_notice
from plinth.store.db import Database
from plinth.store.models import Event, Replica, Workload, utcnow

__all__ = ["NotebookMonitor", "Reading", "parse_activity"]

log = logging.getLogger("plinth.notebooks")

LOG_TAIL_BYTES = 4096
_BUSY = frozenset({"busy", "starting"})


@dataclass(frozen=True)
class Reading:
    """The monitor's last look at a session (for ``GET /api/v1/notebooks/{id}``)."""

    checked_at: datetime
    reachable: bool
    last_activity: datetime | None = None
    kernels: int = 0
    busy_kernels: int = 0
    connections: int = 0
    idle_since: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "checked_at": iso(self.checked_at), "reachable": self.reachable,
            "last_activity": iso(self.last_activity), "kernels": self.kernels,
            "busy_kernels": self.busy_kernels, "connections": self.connections,
            "idle_since": iso(self.idle_since),
        }  # fmt: skip


def _time(v: Any) -> datetime | None:
    if not isinstance(v, str) or not v:
        return None
    try:
        t = datetime.fromisoformat(v)  # Python 3.11 reads the "Z" suffix
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def parse_activity(status: dict[str, Any], kernels: list[dict[str, Any]]) -> Activity:
    """jupyter-server's ``/api/status`` and ``/api/kernels`` answers as an Activity."""
    last = _time(status.get("last_activity"))
    busy = sum(1 for k in kernels if k.get("execution_state") in _BUSY)
    conns = sum(int(k.get("connections") or 0) for k in kernels)
    for k in kernels:
        t = _time(k.get("last_activity"))
        if t is not None and (last is None or t > last):
            last = t
    return Activity(last, len(kernels), busy, conns)


class NotebookMonitor:
    """See the module docstring. `wake` runs a control-loop cycle (to stop what ended);
    `clock` returns aware UTC (tests may pass a fake)."""

    def __init__(
        self,
        db: Database,
        cfg: ServerConfig,
        home: Path,
        wake: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.cfg = cfg.notebooks
        self.grace = cfg.jobs.grace
        self.home = home
        self.wake = wake
        self.clock = clock
        self.readings: dict[str, Reading] = {}
        self._ready: set[str] = set()
        self._warned_idle: dict[str, datetime] = {}
        self._warned_life: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=min(5.0, max(1.0, self.cfg.check_interval)),
                                  trust_env=False)  # fmt: skip

    # -- the service's lifecycle -----------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="plinth-notebooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("notebook check failed")
            self._stop.wait(self.cfg.check_interval)

    # -- one round -----------------------------------------------------------------------

    def check(self) -> None:
        """Look at every running session once (public: tests drive it)."""
        with self.db.read() as s:
            rows = s.execute(
                select(Workload, Replica.host, Replica.port, Replica.log_path)
                .join(Replica, (Replica.workload_id == Workload.id)
                      & (Replica.attempt == Workload.attempt))
                .where(Workload.kind == NOTEBOOK, Workload.state == State.RUNNING.value,
                       Replica.state == "running")
            ).all()  # fmt: skip
            unknown = [w.id for w, *_ in rows if w.id not in self._ready]
            if unknown:
                self._ready.update(s.scalars(
                    select(Event.workload_id).where(Event.workload_id.in_(unknown),
                                                    Event.type == "ready")
                ))  # fmt: skip
            for w, *_ in rows:
                s.expunge(w)
        live = {w.id for w, *_ in rows}
        for d in (self.readings, self._warned_idle, self._warned_life):
            for wid in [k for k in d if k not in live]:
                del d[wid]
        ended = False
        for w, host, port, log_path in rows:
            try:
                ended |= self._check_one(w, host, port, Path(log_path))
            except Exception:
                log.exception("checking notebook %s failed", w.id)
        if ended:
            self.wake()

    def _probe(self, host: str, port: int, token: str) -> Activity | None:
        base = f"http://{host}:{port}"
        headers = {"Authorization": f"token {token}"}
        try:
            st = self._http.get(f"{base}/api/status", headers=headers)
            ks = self._http.get(f"{base}/api/kernels", params={"no_track_activity": "1"},
                                headers=headers)  # fmt: skip
        except httpx.HTTPError:
            return None
        if st.status_code != 200 or ks.status_code != 200:
            return None
        try:
            return parse_activity(st.json(), ks.json())
        except (ValueError, TypeError, AttributeError):
            return None

    def _check_one(self, w: Workload, host: str, port: int, log_path: Path) -> bool:
        nb = w.spec.get("notebook") or {}
        now = self.clock()
        activity = self._probe(host, port, nb.get("token", ""))
        if activity is None:
            self.readings[w.id] = Reading(now, False)
            started = w.started_at or now
            if w.id not in self._ready and (now - started).total_seconds() > self.cfg.start_timeout:
                return self._end(w, State.FAILED,
                                 f"JupyterLab did not answer within {self.cfg.start_timeout:g}s "
                                 f"of its start; its log ends with:\n{_tail(log_path)}", now)
            return False
        if w.id not in self._ready:
            self._ready.add(w.id)
            with self.db.session() as s:
                ev.record(s, w.id, "ready",
                          f"JupyterLab is ready at {notebook_url(host, port)}", now)
        end = ends_at(w)
        assert end is not None and w.started_at is not None  # running
        d = decide(
            now, w.started_at, end, float(nb.get("idle_timeout", 3600.0)),
            self.cfg.warn_fraction, activity,
            warned_idle_since=self._warned_idle.get(w.id),
            warned_lifetime_until=self._warned_life.get(w.id),
            window_end=datetime.fromisoformat(nb["window_end"]) if nb.get("window_end") else None,
        )  # fmt: skip
        self.readings[w.id] = Reading(now, True, activity.last_activity, activity.kernels,
                                      activity.busy_kernels, activity.connections,
                                      d.idle_since)  # fmt: skip
        workspace = Path(nb["workspace"]) if nb.get("workspace") else None
        if d.action in (Action.WARN_IDLE, Action.WARN_LIFETIME):
            if d.action is Action.WARN_IDLE:
                assert d.idle_since is not None
                self._warned_idle[w.id] = d.idle_since
            else:
                self._warned_life[w.id] = end
            with self.db.session() as s:
                ev.record(s, w.id, d.action.value, d.reason, now)
            if workspace is not None:
                write_notice(workspace, f"[{now.isoformat(timespec='seconds')}] notebook "
                                        f"{w.id}: {d.reason}")  # fmt: skip
            return False
        if d.action in (Action.STOP_IDLE, Action.STOP_LIFETIME):
            if workspace is not None:
                write_notice(workspace, f"[{now.isoformat(timespec='seconds')}] notebook "
                                        f"{w.id} stopped: {d.reason}")  # fmt: skip
            return self._end(w, State.TIMED_OUT, f"{d.action.value}: {d.reason}", now)
        return False

    def _end(self, w: Workload, state: State, reason: str, now: datetime) -> bool:
        with self.db.session() as s:
            row = s.get(Workload, w.id, with_for_update=True)
            if row is None:
                return False
            done = end_notebook(s, row, state, reason, now)
        if done:
            log.info("notebook %s: %s", w.id, reason)
        return done

    def reading(self, workload_id: str) -> Reading | None:
        return self.readings.get(workload_id)


def _tail(path: Path, n: int = LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
