"""What replica exits mean for their workload. Pure: no I/O, no clock, no database.

Two decisions, both in the style of ``services.lifecycle`` (values in, a value out):

``replica_outcome(code, why, asked)``
    How one replica ended, as its row's state and words for the event::

        asked by Plinth (cancel, preemption, timeout, attempt over) -> stopped
        status 0                                                   -> succeeded
        EXIT_LOST (supervisor killed before recording a status)    -> lost
        anything else (incl. a signal Plinth did not send)         -> failed

``decide_after_exits(workload, attempt_replicas, notes, retry_delay_s)``
    What a *running* workload does once some of its current attempt's replicas
    ended::

        preempted, replicas still live          -> WAIT     (the gang is still stopping)
        preempted, nothing live                 -> REQUEUE  (pending, queue time kept, no retry used)
        a replica failed/lost (or the attempt
          ended without all succeeding), retries left -> RETRY (pending after a backoff)
        ... no retries left                     -> FAIL
        every replica succeeded                 -> SUCCEED
        otherwise                               -> WAIT

The caller (``services.observe``) applies the decision with ``lifecycle.transition``
inside its transaction; the counters it must bump are named on the decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from plinth.executors.base import EXIT_LOST, describe_exit
from plinth.services.scheduling import LIVE_REPLICA_STATES

__all__ = [
    "AttemptReplica",
    "ExitDecision",
    "Outcome",
    "RunningWorkload",
    "decide_after_exits",
    "replica_outcome",
]

class Outcome(StrEnum):
    WAIT = "wait"
    REQUEUE = "requeue"
    RETRY = "retry"
    FAIL = "fail"
    SUCCEED = "succeed"


@dataclass(frozen=True)
class RunningWorkload:
    """The fields of a running workload the decision reads."""

    preempted: bool
    queued_at: datetime
    failures: int  # failed attempts so far (before this one)
    retries: int  # retries the job asked for


@dataclass(frozen=True)
class AttemptReplica:
    """One replica of the workload's current attempt, as recorded after this cycle's exits."""

    id: int
    role: str
    replica: int
    state: str
    exit_code: int | None


@dataclass(frozen=True)
class ExitDecision:
    """``reason`` is the event's text; ``retry_delay_s`` is set for RETRY only.
    RETRY and FAIL count one more failure; RETRY and REQUEUE start a new attempt."""

    outcome: Outcome
    reason: str = ""
    retry_delay_s: float = 0.0

    @property
    def counts_failure(self) -> bool:
        return self.outcome in (Outcome.RETRY, Outcome.FAIL)

    @property
    def new_attempt(self) -> bool:
        return self.outcome in (Outcome.RETRY, Outcome.REQUEUE)


def replica_outcome(code: int, why: str | None, asked: bool) -> tuple[str, str]:
    """(replica state, words) for a replica that ended with exit `code`.

    `why` is the executor's ``exit_reason`` (``"timeout"``, ``"stopped"``, or None);
    `asked`: Plinth asked it to stop (then it is ``stopped``, whatever its status)."""
    what = describe_exit(code)
    # The Ray executor: the replica's node left the cluster.
    node_lost = (
        f"lost: {why.removeprefix('node-lost: ')}"
        if code == EXIT_LOST and why and why.startswith("node-lost: ") else None
    )  # fmt: skip
    if asked:
        # Its attempt was already ending (a sibling on the same node was found lost
        # first) when its node left: still the node's reason, not a generic one.
        return "stopped", node_lost or what
    if code == 0:
        return "succeeded", what
    if code == EXIT_LOST:
        return "lost", node_lost or what
    # Includes a supervisor stopped by a signal Plinth did not send (kill, systemd
    # stop): a failure, so retries apply and the job ends.
    if why == "stopped":
        what += " (stopped by a signal Plinth did not send)"
    return "failed", what


def decide_after_exits(
    w: RunningWorkload,
    current: Sequence[AttemptReplica],
    notes: Mapping[int, str],
    retry_delay_s: Callable[[int], float],
    now: datetime,
) -> ExitDecision:
    """See the module docstring. `notes`: words for replicas that ended this cycle
    (from ``replica_outcome``); `retry_delay_s(n)`: the backoff before retry n."""
    live = any(r.state in LIVE_REPLICA_STATES for r in current)
    if w.preempted:
        if live:
            return ExitDecision(Outcome.WAIT)
        waited = (now - w.queued_at).total_seconds()
        return ExitDecision(
            Outcome.REQUEUE,
            f"preemption done: all {len(current)} replica(s) stopped; back in the queue "
            f"with its original queue time {w.queued_at.isoformat(timespec='seconds')} "
            f"(waiting {waited:.0f}s in all), no retry used",
        )
    failed = [r for r in current if r.state in ("failed", "lost")]
    if not failed and not live:
        # Nothing of the attempt runs and not all succeeded (a replica ended as
        # `stopped` though the workload was neither cancelled nor preempted): the
        # attempt is over and did not succeed; waiting would last until max_runtime.
        failed = [r for r in current if r.state != "succeeded"]
    if failed:
        f = failed[0]
        how = notes.get(f.id) or describe_exit(f.exit_code or 0)
        if f.state == "stopped":
            how = f"was stopped ({how}) without Plinth asking"
        what = f"replica {f.role}-{f.replica} {how}"
        failures = w.failures + 1
        if failures <= w.retries:
            delay = retry_delay_s(failures)
            return ExitDecision(
                Outcome.RETRY, f"{what}; retry {failures}/{w.retries} in {delay:g}s", delay
            )
        tail = "no retries left" if w.retries else "no retries requested"
        if w.retries:
            tail = f"failed {failures} attempts; {tail}"
        return ExitDecision(Outcome.FAIL, f"{what}; {tail}")
    if current and all(r.state == "succeeded" for r in current):
        return ExitDecision(
            Outcome.SUCCEED, f"all {len(current)} replica(s) exited with status 0"
        )
    return ExitDecision(Outcome.WAIT)
