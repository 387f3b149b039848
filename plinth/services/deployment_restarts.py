"""Restarting the dead replicas of running deployments, in place.

A job's replica that fails ends its attempt (retry or failure: ``services.exits``). A
deployment is long-running: when one of its replicas ends without Plinth asking
(crash, OOM kill, ``kill -9``), the observe phase records the exit (event
``replica_exited``) and leaves the workload ``running``; then ``DeploymentRestarts.run``
starts that replica again -- same row, same port, same attempt, the version the
deployment should serve now -- while its other replicas keep serving (event
``replica_restarted``). The platform endpoint retries another replica meanwhile.

Crash loops back off: the first restart of a replica within ``WINDOW_S`` is immediate,
the n-th waits ``jobs.retry_backoff.delay_s(n - 1)`` seconds after the previous one.

Runs in the control loop's thread, after observe. A restart needs no admission: the
workload still holds its gang's resources (its other replicas, and the dead one's
node share, which no other workload is given while this one runs on it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from plinth.config import ServerConfig
from plinth.executors.base import ReplicaLaunch, describe_exit
from plinth.services import events as ev
from plinth.services.auth import hash_token, new_token
from plinth.services.deployments import DEPLOYMENT, serve_command, stage_version, target_of
from plinth.services.files import archive_limits
from plinth.services.launching import Launcher
from plinth.services.lifecycle import State
from plinth.services.replica_env import ReplicaAddress, replica_env
from plinth.services.wakeups import Wakeups
from plinth.services.workdirs import prepare_code
from plinth.store.db import Database
from plinth.store.models import Replica, Token, Workload, utcnow

__all__ = ["DEAD_STATES", "WINDOW_S", "DeploymentRestarts"]

log = logging.getLogger("plinth.control_loop")

DEAD_STATES = ("failed", "lost", "succeeded")
WINDOW_S = 600.0  # restarts further apart than this start the backoff over


class DeploymentRestarts:
    """See the module docstring."""

    def __init__(self, db: Database, launcher: Launcher, cfg: ServerConfig, home: Path,
                 wakeups: Wakeups) -> None:
        self.db = db
        self.launcher = launcher
        self.cfg = cfg
        self.home = home
        self.wakeups = wakeups
        self._restarts: dict[tuple[str, str, int], list[float]] = {}  # -> monotonic times
        self.waiting = False  # a restart waits for its backoff

    def _delay(self, key: tuple[str, str, int], now: float) -> float:
        recent = [t for t in self._restarts.get(key, []) if now - t < WINDOW_S]
        self._restarts[key] = recent
        if not recent:
            return 0.0
        return max(0.0, recent[-1] + self.cfg.jobs.retry_backoff.delay_s(len(recent)) - now)

    def run(self) -> int:
        """Restart every dead replica of a running deployment whose backoff is over;
        the number started."""
        self.waiting = False
        with self.db.read() as s:
            # Running deployments first (the state index; usually few or none), so that
            # the ended replicas of every past job are never scanned.
            ids = s.scalars(select(Workload.id).where(
                Workload.state == State.RUNNING.value, Workload.kind == DEPLOYMENT,
                Workload.preempted_at.is_(None))).all()
            if not ids:
                return 0
            rows = s.execute(
                select(Replica, Workload.spec, Workload.user_id, Workload.deadline_at)
                .join(Workload, Replica.workload_id == Workload.id)
                .where(Workload.id.in_(ids), Replica.attempt == Workload.attempt,
                       Replica.state.in_(DEAD_STATES))
            ).all()
            if not rows:
                return 0
            plans = []
            for rep, spec, user_id, deadline in rows:
                info = spec.get(DEPLOYMENT) or {}
                target = target_of(s, info, rep.role) if info else None
                peers = s.execute(select(Replica.role, Replica.replica, Replica.host,
                                         Replica.port)
                                  .where(Replica.workload_id == rep.workload_id,
                                         Replica.attempt == rep.attempt)).all()
                s.expunge(rep)
                plans.append((rep, spec, user_id, deadline, target,
                              [ReplicaAddress(*p) for p in peers]))
        started = 0
        now_m = time.monotonic()
        for rep, spec, user_id, deadline, target, peers in plans:
            key = (rep.workload_id, rep.role, rep.replica)
            wait = self._delay(key, now_m)
            if wait > 0:
                self.waiting = True
                self.wakeups.due_in(wait)
                continue
            self._restarts.setdefault(key, []).append(now_m)
            try:
                started += self._restart(rep, spec, user_id, deadline, target, peers)
            except Exception:
                log.exception("restarting replica %s-%s of %s failed",
                              rep.role, rep.replica, rep.workload_id)
                self.waiting = True
                self.wakeups.due_in(self.cfg.jobs.retry_backoff.delay_s(1))
        return started

    def _restart(self, rep: Replica, spec: dict[str, Any], user_id: int, deadline: Any,
                 target: Any, peers: list[ReplicaAddress]) -> int:
        info = spec.get(DEPLOYMENT) or {}
        role = spec["roles"][rep.role]
        command = list(role["command"])
        workdir = prepare_code(self.home, rep.workload_id, None,
                               archive_limits(self.cfg.uploads))
        version = None
        if target is not None and info:
            stage_version(self.home, workdir, target.version, target.path)
            command = serve_command(info, target.version)
            version = target.version
        token = new_token()
        with self.db.session() as s:
            s.connection().execute(insert(Token), [{
                "token_hash": hash_token(token), "user_id": user_id,
                "workload_id": rep.workload_id, "created_at": utcnow()}])
        env = replica_env(
            workload_id=rep.workload_id, role=rep.role, replica=rep.replica,
            attempt=rep.attempt, addresses=peers, params=spec.get("params") or {},
            url=self.launcher.url, token=token, role_env=role.get("env") or {},
        )  # fmt: skip
        now = utcnow()
        left = None if deadline is None else max((deadline - now).total_seconds(), 1.0)
        handle = self.launcher.executor.launch(ReplicaLaunch(
            workload_id=rep.workload_id, role=rep.role, replica=rep.replica,
            attempt=rep.attempt, command=command, env=env, workdir=workdir,
            log_path=Path(rep.log_path), node=rep.node, gpus=tuple(rep.gpus or ()),
            timeout_s=left, grace_s=self.cfg.jobs.grace,
        ))  # fmt: skip
        how = describe_exit(rep.exit_code) if rep.exit_code is not None else rep.state
        n = len(self._restarts.get((rep.workload_id, rep.role, rep.replica), []))
        with self.db.session() as s:
            done = s.execute(
                update(Replica)
                .where(Replica.id == rep.id, Replica.state.in_(DEAD_STATES))
                .values(state="running", handle=handle, started_at=now, finished_at=None,
                        exit_code=None, stop_requested=False)
                .execution_options(synchronize_session=False)
            ).rowcount
            w = s.get(Workload, rep.workload_id)
            live = w is not None and w.state == State.RUNNING.value \
                and w.preempted_at is None and w.attempt == rep.attempt
            if done == 1:
                what = f" serving version {version}" if version is not None else ""
                ev.record(s, rep.workload_id, "replica_restarted",
                          f"replica {rep.role}-{rep.replica} restarted{what} after it "
                          f"{how} (restart {n} within {WINDOW_S / 60:g} min)", now,
                          role=rep.role, replica=rep.replica, attempt=rep.attempt,
                          version=version, exit_code=rep.exit_code)  # fmt: skip
        self.launcher.watch(handle, rep.id)
        if done != 1 or not live:
            # Deleted or restarted elsewhere meanwhile: the observe phase stops what runs
            # for a workload that is over; an unrecorded process is stopped here.
            if done != 1:
                self.launcher.stop([(rep.id, handle)], self.cfg.jobs.grace)
            self.wakeups.wake()
            return 0
        return 1
