"""Starting and stopping replicas through the executor, and recording what happened.

``Launcher.launch(admitted)`` runs after an admission's transaction committed: it stops
the preempted replicas (SIGTERM now, SIGKILL after ``scheduler.reclaim_grace``) and
starts each ``LaunchPlan``: prepare its code, one ``executor.launch`` per replica, then
ONE transaction for that workload alone recording the handles and the state
``running`` (or ``failed`` with the reason). So at any moment at most one workload per
launching thread has started replicas whose handles are not recorded; a crash then
leaves them ``launching``, which ``reconcile`` resolves (``Executor.find_launched``).

No blocking I/O in the loop's thread: a plan with code (an archive to extract, a git
commit to check out -- either may take long, and a git remote may hang) or a
deployment (its model packages, maybe gigabytes, are copied into its working directory)
is prepared and started in a worker thread (``code.prepare_workers``), under
``code.checkout_timeout``; the loop goes on admitting, cancelling and launching
meanwhile. Any other plan starts in the calling thread (the loop's, or a submit's
request thread: executors allow ``launch`` from any thread).

The launcher also owns the executor's other calls for the loop: ``poll`` (a failing
poll is taken as "still running" and counted), ``exit_reason``, ``stop`` (and the set of
replicas this process asked to stop), and the exit watcher's pidfds.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from plinth.config import ServerConfig
from plinth.executors.base import EXIT_LOST, Executor, ReplicaLaunch
from plinth.services.apply import (
    WORKLOAD_LIFECYCLE_COLUMNS,
    Admitted,
    LaunchPlan,
    guarded_transition,
)
from plinth.services.exit_watcher import ExitWatcher
from plinth.services.files import archive_limits
from plinth.services.lifecycle import State
from plinth.services.replica_env import replica_env
from plinth.services.wakeups import Wakeups
from plinth.services.workdirs import CodeError, prepare_code
from plinth.services.workspaces import ensure_workspace
from plinth.store.db import Database
from plinth.store.models import Event, Replica, Workload, utcnow

__all__ = ["Launcher"]

log = logging.getLogger("plinth.control_loop")


def _slow_to_prepare(plan: LaunchPlan) -> bool:
    """Whether starting `plan` copies or fetches much before its replicas can start."""
    return plan.code is not None or bool(plan.spec.get("deployment"))


class Launcher:
    """See the module docstring. `url` is what replicas get as ``PLINTH_URL``."""

    def __init__(
        self,
        db: Database,
        executor: Executor,
        cfg: ServerConfig,
        home: Path,
        url: str,
        wakeups: Wakeups,
        reclaim_grace_s: float,
    ) -> None:
        self.db = db
        self.executor = executor
        self.cfg = cfg
        self.home = home
        self.url = url
        self.wakeups = wakeups
        self.reclaim_grace_s = reclaim_grace_s
        self.stopping: set[int] = set()  # replica ids this process asked to stop
        self.poll_errors = 0  # executor.poll calls that raised (replica taken as running)
        # A replica's exit wakes the loop at once, for a cycle that looks at the replicas
        # that ended only: not at every running one.
        self.exits = ExitWatcher(wakeups.exit_seen)
        self._pid_replica: dict[int, int] = {}  # watched supervisor pid -> replica id
        self._workers = ThreadPoolExecutor(
            max_workers=cfg.code.prepare_workers, thread_name_prefix="plinth-code"
        )
        self._preparing: set[str] = set()  # workload ids whose code a worker prepares
        self._preparing_lock = threading.Lock()
        self._closing = False

    def close(self) -> None:
        """Stop taking work and end the git commands under way (their workloads stay
        ``admitted``; the next start's reconcile requeues them)."""
        from plinth.artifacts.gitcode import kill_running

        self._closing = True
        self._workers.shutdown(wait=False, cancel_futures=True)
        kill_running()
        self.exits.close()

    # -- launch --------------------------------------------------------------------------

    def launch(self, done: Admitted) -> None:
        """After the commit: stop what was preempted, start what was admitted."""
        grace = self.reclaim_grace_s
        self.stop(done.to_stop, grace)
        if done.to_stop:
            self.wakeups.due_in(grace + self.cfg.scheduler.poll_interval)
        here = [p for p in done.plans if not _slow_to_prepare(p)]
        for plan in done.plans:
            if _slow_to_prepare(plan):
                self._prepare_elsewhere(plan)
        self.start_all(here)

    def preparing(self) -> list[str]:
        """Workloads whose code a worker is preparing now."""
        with self._preparing_lock:
            return list(self._preparing)

    def abort_preparing(self, workload_id: str) -> None:
        """End the git commands preparing `workload_id`'s code (it was cancelled): its
        worker then records the replicas as never started and moves on."""
        from plinth.artifacts.gitcode import kill_running

        kill_running(tag=workload_id)

    def _prepare_elsewhere(self, plan: LaunchPlan) -> None:
        with self._preparing_lock:
            self._preparing.add(plan.workload_id)

        def work() -> None:
            from plinth.artifacts.gitcode import tagged

            try:
                with tagged(plan.workload_id):
                    self.start_all([plan])
            except Exception:  # the workload stays admitted; reconcile/observe see it
                log.exception("starting %s failed", plan.workload_id)
            finally:
                with self._preparing_lock:
                    self._preparing.discard(plan.workload_id)

        try:
            self._workers.submit(work)
        except RuntimeError:  # shutting down: the next start's reconcile takes it up
            with self._preparing_lock:
                self._preparing.discard(plan.workload_id)

    def start_all(self, plans: list[LaunchPlan]) -> None:
        """Start each plan and record its handles and ``running`` in a transaction of its
        own right after (see the module docstring)."""
        trouble = False
        for plan in plans:
            handles, error, when = self.start_plan(plan)
            if error is not None and not handles and self._closing:
                # Its preparation was cut short by the server stopping: not the job's
                # failure. It stays admitted; the next start's reconcile requeues it.
                continue
            try:
                trouble |= self.record_launch(plan, handles, error, when)
            finally:
                for rid, h in handles.items():
                    self.watch(h, rid)
        if trouble:
            self.wakeups.wake()

    def start_plan(self, plan: LaunchPlan) -> tuple[dict[int, dict[str, Any]], str | None, datetime]:
        """Prepare the code and start every replica of one plan: (handles, error, when)."""
        handles: dict[int, dict[str, Any]] = {}
        try:
            workdir = prepare_code(
                self.home, plan.workload_id, plan.code, archive_limits(self.cfg.uploads),
                git_timeout_s=self.cfg.code.checkout_timeout,
                git_protocols=tuple(self.cfg.code.git_protocols),
            )  # fmt: skip
        except CodeError as e:
            return handles, str(e), utcnow()
        notebook = plan.spec.get("notebook")
        if notebook is not None:  # a notebook's root: its user's persistent workspace
            try:
                ensure_workspace(self.home, Path(notebook["workspace"]).name, plan.workload_id)
            except (OSError, RuntimeError) as e:
                return handles, f"could not prepare the notebook workspace: {e}", utcnow()
        if plan.spec.get("deployment"):  # its replicas read the package from workdir
            from plinth.services.deployments import stage_for_launch

            try:
                stage_for_launch(self.db, self.home, workdir, plan.spec)
            except Exception as e:  # noqa: BLE001 - the workload fails with the reason
                return handles, f"could not stage the model package: {e}", utcnow()
        params = plan.spec.get("params") or {}
        specs: list[tuple[int, ReplicaLaunch]] = []
        for r in plan.replicas:
            env = replica_env(
                workload_id=plan.workload_id, role=r.role, replica=r.replica,
                attempt=plan.attempt, addresses=plan.addresses, params=params,
                url=self.url, token=plan.token,
                role_env=plan.spec["roles"][r.role].get("env") or {},
            )  # fmt: skip
            spec = ReplicaLaunch(
                workload_id=plan.workload_id, role=r.role, replica=r.replica,
                attempt=plan.attempt, command=list(plan.spec["roles"][r.role]["command"]),
                env=env, workdir=workdir, log_path=r.log_path, node=r.node, gpus=r.gpus,
                timeout_s=plan.max_runtime_s, grace_s=self.cfg.jobs.grace,
                resources=r.resources,
            )  # fmt: skip
            specs.append((r.id, spec))
        try:  # the whole gang first (a Ray placement group; nothing for the local executor)
            self.executor.reserve(plan.workload_id, plan.attempt, [s for _, s in specs])
        except Exception as e:  # noqa: BLE001 - any reservation failure fails the workload
            return handles, f"could not reserve the replicas' resources: {e}", utcnow()
        for rid, spec in specs:
            try:
                handles[rid] = self.executor.launch(spec)
            except Exception as e:  # noqa: BLE001 - any launch failure fails the workload
                return (
                    handles, f"could not start replica {spec.role}-{spec.replica}: {e}", utcnow()
                )
        return handles, None, utcnow()

    def record_launch(
        self, plan: LaunchPlan, handles: dict[int, dict[str, Any]], error: str | None,
        when: datetime,
    ) -> bool:  # fmt: skip
        """One transaction: the plan's handles, replica states and the workload's state.
        True when a further cycle is needed (failed, or cancelled meanwhile)."""
        trouble = False
        with self.db.session() as s:
            r = s.connection().execute(
                select(*WORKLOAD_LIFECYCLE_COLUMNS).where(Workload.id == plan.workload_id)
            ).one()
            events: list[dict[str, Any]] = []
            # Never started: a failure, unless the workload was cancelled meanwhile.
            unstarted = "failed" if r.state == State.ADMITTED else "stopped"
            for rep in plan.replicas:
                if rep.id in handles:
                    values = {"handle": handles[rep.id], "state": "running", "started_at": when}
                else:
                    values = {"state": unstarted, "finished_at": when}
                s.connection().execute(update(Replica).where(Replica.id == rep.id).values(**values))
            if r.state != State.ADMITTED:
                trouble = True  # cancelled meanwhile: observe() stops what was started
            elif error is not None:
                trouble = True
                guarded_transition(s, r, State.FAILED, error, when, events)
            elif guarded_transition(
                s, r, State.RUNNING,
                f"{len(handles)} replica(s) started on {', '.join(plan.nodes)} "
                f"(attempt {plan.attempt})",
                when, events,
                values={"deadline_at": when + timedelta(seconds=plan.max_runtime_s)},
                attempt=plan.attempt,
            ):  # fmt: skip
                self.wakeups.due_in(plan.max_runtime_s)
            else:
                trouble = True  # cancelled meanwhile: observe() stops what was started
            if events:
                s.connection().execute(insert(Event), events)
        return trouble

    # -- observe and stop ----------------------------------------------------------------

    def stop(self, replicas: list[tuple[int, dict[str, Any]]], grace_s: float) -> None:
        """SIGTERM each (replica id, handle) now, SIGKILL after `grace_s` (non-blocking)."""
        for rid, handle in replicas:
            try:
                self.executor.stop(handle, grace_s)
            except Exception:
                log.exception("stopping replica %s failed", rid)
            self.stopping.add(rid)

    def watch(self, handle: dict[str, Any] | None, rid: int) -> None:
        """Have the exit watcher wake the loop when this replica's supervisor ends."""
        pid = (handle or {}).get("supervisor_pid")
        if isinstance(pid, int):
            self._pid_replica[pid] = rid
            self.exits.watch(pid)

    def forget(self, handle: dict[str, Any] | None) -> None:
        self._pid_replica.pop((handle or {}).get("supervisor_pid"), None)

    def take_ended(self) -> set[int]:
        """Replica ids whose supervisors the watcher saw end since the last call."""
        ended = (self._pid_replica.pop(pid, None) for pid in self.exits.take_ended())
        return {rid for rid in ended if rid is not None}

    def poll(self, handle: dict[str, Any] | None) -> int | None:
        """The replica's exit code, or None while it runs.

        A failing poll (EMFILE, a transient I/O error) says nothing about the replica:
        it is taken as still running, logged and counted in ``poll_errors``. Only the
        executor itself declares a replica lost (``EXIT_LOST``); guessing "lost" here
        would let a retry start a second copy of a replica that still runs."""
        if not handle:
            return EXIT_LOST
        try:
            return self.executor.poll(handle)
        except Exception:
            self.poll_errors += 1
            log.exception("poll failed for %s; taken as still running", handle)
            return None

    def exit_reason(self, handle: dict[str, Any]) -> str | None:
        try:
            return self.executor.exit_reason(handle)
        except Exception:  # noqa: BLE001 - the reason is optional detail
            return None
