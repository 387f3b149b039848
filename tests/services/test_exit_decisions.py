"""``decide_after_exits`` and ``replica_outcome``: exits -> what the workload does.
Pure values in, a decision out: no processes, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from plinth.executors.base import EXIT_LOST
from plinth.services.exits import (
    AttemptReplica,
    Outcome,
    RunningWorkload,
    decide_after_exits,
    replica_outcome,
)

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
QUEUED = NOW - timedelta(minutes=5)


def rep(i: int, state: str, code: int | None = None) -> AttemptReplica:
    return AttemptReplica(i, "main", i, state, code)


def decide(reps: list[AttemptReplica], *, preempted: bool = False, failures: int = 0,
           retries: int = 0, notes: dict[int, str] | None = None):  # fmt: skip
    w = RunningWorkload(preempted, QUEUED, failures, retries)
    return decide_after_exits(w, reps, notes or {}, lambda n: 5.0 * n, NOW)


@pytest.mark.parametrize(
    ("name", "reps", "kw", "want", "want_in_reason"),
    [
        ("all succeeded", [rep(0, "succeeded", 0), rep(1, "succeeded", 0)], {},
         Outcome.SUCCEED, "all 2 replica(s) exited with status 0"),
        ("one still runs", [rep(0, "succeeded", 0), rep(1, "running")], {}, Outcome.WAIT, ""),
        ("failure, no retries", [rep(0, "failed", 3), rep(1, "running")], {},
         Outcome.FAIL, "replica main-0 exited with status 3; no retries requested"),
        ("failure, retry left", [rep(0, "failed", 1)], {"retries": 2, "failures": 1},
         Outcome.RETRY, "retry 2/2 in 10s"),
        ("failures used up", [rep(0, "lost", EXIT_LOST)], {"retries": 1, "failures": 1},
         Outcome.FAIL, "failed 2 attempts; no retries left"),
        ("stopped unasked", [rep(0, "stopped", -15)], {}, Outcome.FAIL,
         "was stopped (killed by signal 15 (SIGTERM)) without Plinth asking"),
        ("preempted, gang stopping", [rep(0, "stopped", -15), rep(1, "running")],
         {"preempted": True}, Outcome.WAIT, ""),
        ("preempted, all stopped", [rep(0, "stopped", -15), rep(1, "stopped", -9)],
         {"preempted": True}, Outcome.REQUEUE, "waiting 300s in all), no retry used"),
    ],
)  # fmt: skip
def test_decide_after_exits(name, reps, kw, want, want_in_reason) -> None:
    d = decide(reps, **kw)
    assert d.outcome is want, name
    assert want_in_reason in d.reason


def test_retry_carries_its_backoff_and_counts_a_failure() -> None:
    d = decide([rep(0, "failed", 1)], retries=3)
    assert (d.outcome, d.retry_delay_s, d.counts_failure, d.new_attempt) == (
        Outcome.RETRY, 5.0, True, True
    )  # fmt: skip
    requeue = decide([rep(0, "stopped", -15)], preempted=True)
    assert (requeue.counts_failure, requeue.new_attempt) == (False, True)


def test_this_cycles_note_words_the_failure() -> None:
    d = decide([rep(0, "failed", -9)], notes={0: "killed by signal 9 (SIGKILL) (stopped by a "
                                                 "signal Plinth did not send)"})  # fmt: skip
    assert "did not send" in d.reason


@pytest.mark.parametrize(
    ("code", "why", "asked", "want"),
    [
        (0, None, False, "succeeded"),
        (1, None, True, "stopped"),
        (EXIT_LOST, None, False, "lost"),
        (-15, "stopped", False, "failed"),
        (2, None, False, "failed"),
    ],
)
def test_replica_outcome(code: int, why: str | None, asked: bool, want: str) -> None:
    state, what = replica_outcome(code, why, asked)
    assert state == want and what
    if why == "stopped" and not asked:
        assert "did not send" in what


@pytest.mark.parametrize("asked", [False, True])
def test_a_replica_whose_ray_node_left_says_so_even_when_being_stopped(asked: bool) -> None:
    why = "node-lost: node t1 left the Ray cluster; its replicas are gone with it"
    state, what = replica_outcome(EXIT_LOST, why, asked)
    assert state == ("stopped" if asked else "lost")
    assert what == "lost: node t1 left the Ray cluster; its replicas are gone with it"
