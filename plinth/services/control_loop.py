"""The control loop: a thin driver of wake-ups and cycles over the loop's parts.

One thread runs ``cycle()`` whenever it is woken (a submit, a cancel: ``wake()``; a
replica's exit: the exit watcher) and at least every ``scheduler.poll_interval``
seconds (``services.wakeups``). A cycle is::

    admit   -> launch      admission (services.admit_cycle: snapshot, schedule and
                           services.apply.apply_decisions in ONE write transaction),
                           then services.launching starts what it admitted and stops
                           what it preempted, after the commit
    observe                services.observe: poll replicas, record exits, decide
                           (services.exits.decide_after_exits), stop what must stop
    restart                services.deployment_restarts: deployments' dead replicas
    admit   -> launch      again when exits may have freed capacity

Where each responsibility lives:

    services/wakeups.py          when a cycle runs (wake-ups, due times, full looks)
    services/admit_cycle.py      the admit phase and the caches it keeps
    services/apply.py            applying one cycle's decisions (one transaction)
    services/admit_at_submit.py  admission inside a submit's transaction
    services/launching.py        executor calls: prepare code, launch, stop, poll
    services/observe.py          the observe phase
    services/exits.py            pure: what exits mean for a workload
    services/usage.py            the fair-share usage history

Preemption (reclaim): the workload stays ``running`` with ``preempted_at`` set (event
``preempted`` with the scheduler's reason) and its replicas get SIGTERM, SIGKILL after
``scheduler.reclaim_grace``; it keeps holding its resources until they have exited,
then returns to ``pending`` (event ``requeued``) with its original ``queued_at``,
without using a retry. Every ended replica adds a usage record (fair share).

The executor is called from this thread, from a submit's request thread (``launch``
and ``allocate_port`` only: executors must allow that), from the code-preparing
workers (``launch``) and from ``reconcile`` before the loop starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from plinth import scheduler as core
from plinth.config import ServerConfig
from plinth.executors.base import Executor, NodeCapacity
from plinth.services.admission import NodeFree
from plinth.services.admit_at_submit import BURST_GAP_S, AdmitAtSubmit
from plinth.services.admit_cycle import AdmissionCycle
from plinth.services.apply import Admitted
from plinth.services.deployment_restarts import DeploymentRestarts
from plinth.services.launching import Launcher
from plinth.services.observe import Observer
from plinth.services.scheduling import LIVE_REPLICA_STATES
from plinth.services.usage import UsageHistory
from plinth.services.wakeups import Wakeups
from plinth.store.db import Database
from plinth.store.models import Workload

__all__ = ["LIVE_REPLICA_STATES", "ControlLoop"]

log = logging.getLogger("plinth.control_loop")


class ControlLoop:
    """Owns the executor and the loop's parts; see the module docstring."""

    def __init__(
        self, db: Database, executor: Executor, cfg: ServerConfig, home: Path, url: str
    ) -> None:
        self.db = db
        self.executor = executor
        self.cfg = cfg
        self.home = home
        self.nodes: tuple[NodeCapacity, ...] = tuple(executor.inventory())
        # Fixed for the life of the loop: built once, not per submit.
        self._capacity = tuple(
            NodeFree(n.name, n.address, n.cpu, n.memory_mib, tuple(range(n.gpu)))
            for n in self.nodes
        )
        self.policy: core.SchedulerConfig = cfg.scheduler.policy()
        self.wakeups = Wakeups(cfg.scheduler.poll_interval)
        self.usage_history = UsageHistory(self.policy.fair_share_half_life_s)
        self.launcher = Launcher(db, executor, cfg, home, url, self.wakeups,
                                 self.policy.reclaim_grace_s)  # fmt: skip
        self.admission = AdmissionCycle(db, executor, self.nodes, home, self.policy,
                                        self.usage_history, self.wakeups)  # fmt: skip
        self.at_submit = AdmitAtSubmit(db, self.admission, cfg.scheduler.admit_on_submit)
        self.observer = Observer(db, self.launcher, self.usage_history, cfg, self.wakeups)
        self.restarts = DeploymentRestarts(db, self.launcher, cfg, home, self.wakeups)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_full = -float("inf")  # when a full cycle last ended (monotonic)
        self.cycles = 0

    # -- what the rest of the server reads ------------------------------------------------

    @property
    def url(self) -> str:
        """What replicas get as PLINTH_URL (the server sets it once its port is bound)."""
        return self.launcher.url

    @url.setter
    def url(self, value: str) -> None:
        self.launcher.url = value

    @property
    def poll_errors(self) -> int:
        """executor.poll calls that raised (the replica was taken as still running)."""
        return self.launcher.poll_errors

    @property
    def on_submit(self) -> dict[str, int]:
        """Submissions by what admission at submit did (``admit_at_submit.OUTCOMES``)."""
        return self.at_submit.counts

    @property
    def last_phases(self) -> dict[str, float]:
        """The last schedule's phase durations (seconds)."""
        return self.admission.last_phases

    def capacity(self) -> tuple[NodeFree, ...]:
        """Every node at full capacity (to refuse gangs that could never start)."""
        return self._capacity

    def refresh_nodes(self) -> bool:
        """Take up the executor's inventory when it changed: a Ray cluster's nodes join
        and leave (the local executor's never change: then this is one comparison).
        True when it changed. A failing inventory keeps the last one."""
        try:
            nodes = tuple(self.executor.inventory())
        except Exception:
            log.exception("executor inventory failed; keeping the last one")
            return False
        if not nodes or nodes == self.nodes:
            return False
        log.warning(
            "nodes changed: %s -> %s",
            ", ".join(n.name for n in self.nodes), ", ".join(n.name for n in nodes),
        )  # fmt: skip
        self.nodes = nodes
        self._capacity = tuple(
            NodeFree(n.name, n.address, n.cpu, n.memory_mib, tuple(range(n.gpu))) for n in nodes
        )
        self.admission.nodes = nodes
        self.at_submit.forget_snapshot()
        return True

    def usage(self) -> tuple[core.UsageRecord, ...]:
        """The fair-share usage history the scheduler uses (for read-side views)."""
        return self.usage_history.records()

    # -- the loop's own lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread (call ``reconcile`` first)."""
        self._thread = threading.Thread(target=self._run, name="plinth-control-loop", daemon=True)
        self.wakeups.loop_thread = self._thread
        self._thread.start()
        self.launcher.exits.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop thread. Replicas keep running; a restart re-adopts them."""
        self._stop.set()
        self.wakeups.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self.launcher.close()

    def wake(self, workload: Workload | None = None) -> None:
        """Run a cycle now (after a submit, cancel, ...). A just-submitted `workload` is
        handed over so the cycle need not read its spec back from the database."""
        if workload is not None:
            self.admission.hand_over(workload)
        self.wakeups.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            full = self.wakeups.wait(self._last_full, self.launcher.exits.enabled)
            if self._stop.is_set():
                break
            try:
                self.cycle(full)
                if full:
                    self._last_full = time.monotonic()
                # Read the next submit's snapshot ahead, unless submissions come in a
                # burst (each commit would make the read stale at once).
                if not self.at_submit.in_burst():
                    self.at_submit.keep_snapshot()
            except Exception:
                log.exception("control loop cycle failed")
                self.wakeups.look_again()  # exits already taken from the watcher
                self._stop.wait(min(1.0, self.cfg.scheduler.poll_interval))

    def cycle(self, full: bool = True) -> None:
        """One admit + observe round (public so tests can drive the loop synchronously).

        ``full=False``: observe only the replicas whose exits the watcher reported."""
        self.cycles += 1
        if full:
            self.refresh_nodes()
        # Admit first: a submit's wake-up should not wait behind bookkeeping of exits.
        while self.admit_and_launch():
            pass
        ended = self.launcher.take_ended()
        only = None if full else ended
        changed = (only is None or only) and self.observe(only)
        if changed:
            while self.admit_and_launch():  # exits may have freed capacity
                pass
        if changed or full or self.restarts.waiting:
            self.restarts.run()  # deployments' dead replicas start again

    # -- the phases (public: tests drive them one by one) ----------------------------------

    def observe(self, only: set[int] | None = None) -> bool:
        """Poll running replicas (those with ids in `only`, or all), apply exits and
        deadlines, stop what must stop. True when something changed."""
        return self.observer.observe(only)

    def admit_and_launch(self) -> bool:
        """Run one admission round and launch what it admitted. True when more
        admissions may be waiting (the batch was cut)."""
        done = self.admission.run()
        if done is None:
            return False
        self.launch_admitted(done)
        return done.more

    def launch_admitted(self, done: Admitted) -> None:
        """After the commit: stop what was preempted, start what was admitted."""
        self.launcher.launch(done)

    # -- admission at submit (services.admit_at_submit) ------------------------------------

    @contextmanager
    def submitting(self) -> Iterator[Callable[[Session, Workload, str], Admitted | None] | None]:
        """See ``AdmitAtSubmit.submitting``."""
        with self.at_submit.submitting() as admit:
            yield admit

    def start_admitted(self, done: Admitted) -> None:
        """After a submit's transaction admitted its job and committed: start it (code
        is prepared in a worker thread). The loop reads its snapshot ahead again once
        the burst gap has passed."""
        try:
            self.launch_admitted(done)
        except Exception:  # the job is admitted and committed: never a 500 for it
            log.exception("starting %s failed", [p.workload_id for p in done.plans])
            self.wake()
        self.wakeups.due_in(BURST_GAP_S)

    def keep_snapshot(self) -> None:
        """Read a snapshot ahead for admission at submit (see ``AdmitAtSubmit``)."""
        self.at_submit.keep_snapshot()

    def snapshot_is_current(self) -> bool:
        return self.at_submit.snapshot_is_current()
