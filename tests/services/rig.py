"""A test rig for the control loop: a real SQLite database with the admin bootstrapped,
the real local executor, and loops driven synchronously with ``cycle()``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _waiting import wait_for
from sqlalchemy import select

from plinth.config import ServerConfig
from plinth.executors.local import LocalExecutor
from plinth.services.auth import Principal, bootstrap_admin
from plinth.services.control_loop import ControlLoop
from plinth.services.jobs import submit_job
from plinth.services.specs import JobSpec
from plinth.store.db import Database
from plinth.store.migrate import upgrade
from plinth.store.models import Event, Replica, Workload

PY = sys.executable
CFG = {
    "nodes": [{"name": "n1", "cpu": 4, "memory": "8Gi", "gpu": 0}],
    "scheduler": {"poll_interval": 0.05},
    "jobs": {"grace": "1s", "retry_backoff": {"initial": 0.01, "factor": 1, "max": 0.01}},
}
SLEEP = "import time; time.sleep(120)"


class Rig:
    """A database, a configuration and a way to make control loops over them."""

    def __init__(self, tmp_path: Path, db_url: str | None = None) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.db = Database(db_url or f"sqlite:///{tmp_path / 'p.db'}")
        upgrade(self.db.engine)
        self.cfg = ServerConfig.model_validate(CFG)
        os.environ.setdefault("PLINTH_ADMIN_TOKEN", "plt_test")
        with self.db.session() as s:
            bootstrap_admin(s, self.home, {"cpu": 4.0, "memory": 8192, "gpu": 0})
        self.admin = Principal(1, "admin", 1, "default", True)
        self.loops: list[ControlLoop] = []

    def loop(self, executor: LocalExecutor | None = None) -> ControlLoop:
        loop = ControlLoop(self.db, executor or LocalExecutor(self.cfg_nodes()), self.cfg,
                           self.home, "http://127.0.0.1:1")  # fmt: skip
        self.loops.append(loop)
        return loop

    def cfg_nodes(self) -> list[dict[str, Any]]:
        return [n.model_dump() for n in self.cfg.nodes or []]

    def submit(self, code: str = SLEEP, retries: int = 0, replicas: int = 1) -> str:
        spec = JobSpec.model_validate({
            "name": "t", "retries": retries,
            "roles": {"main": {"replicas": replicas, "resources": {"cpu": 0.1, "memory": "32Mi"},
                               "command": [PY, "-c", code]}},
        })  # fmt: skip
        loop = self.loops[-1] if self.loops else None
        with self.db.session() as s:
            w = submit_job(s, self.admin, spec, self.cfg, loop.capacity() if loop else ())
            return w.id

    def job(self, wid: str) -> Workload:
        with self.db.read() as s:
            w = s.get(Workload, wid)
            assert w is not None
            return w

    def replicas(self, wid: str) -> list[Replica]:
        with self.db.read() as s:
            return list(s.scalars(
                select(Replica).where(Replica.workload_id == wid)
                .order_by(Replica.attempt, Replica.replica)
            ))  # fmt: skip

    def events(self, wid: str) -> list[Event]:
        with self.db.read() as s:
            return list(s.scalars(select(Event).where(Event.workload_id == wid)))

    def cleanup(self) -> None:
        """Stop every replica any loop of this rig started."""
        ex = LocalExecutor(self.cfg_nodes())
        for wid in self._all():
            for r in self.replicas(wid):
                if r.handle:
                    ex.stop(dict(r.handle), 0)
                for h in ex.find_launched(wid, r.role, r.replica, r.attempt, r.log_path):
                    ex.stop(h, 0)
        self.db.dispose()

    def _all(self) -> list[str]:
        with self.db.read() as s:
            return list(s.scalars(select(Workload.id)))


def drive(loop: ControlLoop, pred: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Run cycles until `pred()` is truthy (fail after `timeout` seconds)."""

    def step() -> Any:
        loop.cycle()
        return pred()

    return wait_for(step, timeout, what)
