"""Deployments follow their alias and their version's deltas (a background service).

Every ``interval_s`` seconds, for each running deployment, the follower asks each
running replica what it serves (``GET /v2/models/{model}``: version and
``parameters.delta_seq``) and compares it with what the deployment should serve
(``deployments.target_of``: the alias's version now, or the pinned version):

* another version: the version is copied into the replica's working directory and
  ``POST /control/version`` loads it beside the serving one, warms it up and swaps it
  in (the replica keeps answering throughout; event ``version_swapped``). Moving the
  alias back is the same move: a rollback.
* deltas published after the one it applied: each is copied and applied in order with
  ``POST /control/delta`` (event ``deltas_applied``).

Replicas are brought over one at a time, so during a move a deployment may answer from
both versions for a moment. A replica that does not answer (restarting) is skipped
until the next round; a replica restarted by ``deployment_restarts`` starts with the
target version already. No I/O of this thread ever blocks the control loop.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from plinth.services import events as ev
from plinth.services.deployments import (
    DEPLOYMENT,
    deltas_of,
    stage_delta,
    stage_version,
    target_of,
)
from plinth.services.lifecycle import State
from plinth.services.workdirs import workdir_of
from plinth.store.db import Database
from plinth.store.models import Replica, Workload, utcnow

__all__ = ["DeploymentFollower"]

log = logging.getLogger("plinth.deployments")


class DeploymentFollower:
    """See the module docstring. ``start``/``stop`` as every background service."""

    def __init__(self, db: Database, home: Path, interval_s: float = 1.0) -> None:
        self.db = db
        self.home = Path(home)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        # Failures already reported (deployment, replica, version, seq): one event
        # each, not one per round while the replica keeps refusing.
        self._reported: set[tuple[str, str, int, int]] = set()

    def start(self) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(600.0, connect=2.0))
        self._thread = threading.Thread(target=self._run, name="plinth-deploy-follower",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.follow_once()
            except Exception:
                log.exception("following deployments failed")

    def follow_once(self) -> int:
        """One round over every running deployment; the number of replicas changed."""
        with self.db.read() as s:
            ids = s.scalars(select(Workload.id).where(
                Workload.state == State.RUNNING.value, Workload.kind == DEPLOYMENT,
                Workload.preempted_at.is_(None))).all()
            if not ids:
                return 0
            rows = s.execute(
                select(Workload.id, Workload.spec, Replica.role, Replica.replica,
                       Replica.host, Replica.port)
                .join(Replica, Replica.workload_id == Workload.id)
                .where(Workload.id.in_(ids), Replica.attempt == Workload.attempt,
                       Replica.state == "running")
                .order_by(Workload.id, Replica.replica)
            ).all()
            targets: dict[tuple[str, str], Any] = {}
            deltas: dict[tuple[str, str], list[tuple[int, str]]] = {}
            for wid, spec, role, *_ in rows:
                if (wid, role) in targets:
                    continue
                info = spec.get(DEPLOYMENT) or {}
                t = target_of(s, info, role) if info else None
                targets[(wid, role)] = t
                if t is not None:
                    deltas[(wid, role)] = deltas_of(s, info["model_id"], t.version, 0)
        changed = 0
        for wid, spec, role, replica, host, port in rows:
            if self._stop.is_set():
                break
            t = targets.get((wid, role))
            if t is None:
                continue
            try:
                changed += self._follow(wid, spec[DEPLOYMENT], f"{role}-{replica}",
                                        f"{host}:{port}", t, deltas.get((wid, role), []))
            except httpx.TransportError:
                continue  # restarting or not ready: the next round
            except Exception:
                log.exception("following deployment %s replica %s failed", wid, replica)
        return changed

    def _follow(self, wid: str, info: dict[str, Any], replica: str, addr: str, t: Any,
                deltas: list[tuple[int, str]]) -> int:
        assert self._client is not None
        c = self._client
        auth = {"Authorization": f"Bearer {info['control_token']}"}
        r = c.get(f"http://{addr}/v2/models/{info['model']}")
        if r.status_code != 200:
            return 0
        meta = r.json()
        serving = str((meta.get("versions") or [""])[0])
        seq = int((meta.get("parameters") or {}).get("delta_seq") or 0)
        workdir = workdir_of(self.home, wid)
        changed = 0
        if serving != str(t.version):
            path = stage_version(self.home, workdir, t.version, t.path)
            r = c.post(f"http://{addr}/control/version", headers=auth,
                       json={"path": str(path), "version": str(t.version)})
            if r.status_code != 200:
                if not self._first_failure(wid, replica, t.version, 0):
                    return 0
                self._event(wid, "version_swap_failed",
                            f"replica {replica} could not load version {t.version}: "
                            f"{r.status_code} {r.text[:500]}", replica=replica,
                            version=t.version)
                return 0
            alias = (info.get("canary") or {}).get("alias") if replica.startswith("canary") \
                else info.get("alias")
            how = f"alias {alias!r} points at it" if alias else "pinned"
            self._event(wid, "version_swapped",
                        f"replica {replica} swapped version {serving} for version "
                        f"{t.version} ({how})", replica=replica, version=t.version,
                        previous=serving)
            seq, changed = 0, 1
        applied = []
        for dseq, dpath in deltas:
            if dseq <= seq:
                continue
            path = stage_delta(self.home, workdir, t.version, dseq, dpath)
            r = c.post(f"http://{addr}/control/delta", headers=auth,
                       json={"path": str(path), "seq": dseq, "version": str(t.version)})
            if r.status_code != 200:
                if not self._first_failure(wid, replica, t.version, dseq):
                    break
                self._event(wid, "delta_failed",
                            f"replica {replica} refused delta {dseq} of version "
                            f"{t.version}: {r.status_code} {r.text[:500]}", replica=replica,
                            version=t.version, seq=dseq)
                break
            applied.append(dseq)
        if applied:
            self._event(wid, "deltas_applied",
                        f"replica {replica} applied delta(s) {applied[0]}.."
                        f"{applied[-1]} of version {t.version}", replica=replica,
                        version=t.version, seq=applied[-1])
            changed = 1
        return changed

    def _first_failure(self, wid: str, replica: str, version: int, seq: int) -> bool:
        key = (wid, replica, version, seq)
        if key in self._reported:
            return False
        self._reported.add(key)
        return True

    def _event(self, wid: str, type_: str, reason: str, **data: Any) -> None:
        with self.db.session() as s:
            ev.record(s, wid, type_, reason, utcnow(), **data)
