"""Backfill: lower-ranked work starts early only if it cannot delay the top blocked workload."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from plinth.scheduler import SchedulerConfig, schedule

from .builders import HOUR, NOW, group, job, node, snapshot

ROOMY = group("ads", cpu=512, mem=4096, gpu=64)
# r holds 6 of 8 cores until NOW + 50 min (started 10 min ago, max_runtime 1 h).
ONE_NODE = [node("n1", 8, 32)]
RUNNING = [job("r").cpu(6).runtime(HOUR).running("n1", start=NOW - 600)]
# "big" waited longest, so it ranks first and is blocked by capacity.
BIG = job("big").cpu(8).queued(NOW - 5 * HOUR)


@dataclass
class Case:
    name: str
    pending: list
    nodes: list = field(default_factory=lambda: ONE_NODE)
    running: list = field(default_factory=lambda: RUNNING)
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    want_admitted: list[str] = field(default_factory=list)
    want_backfill: list[str] = field(default_factory=list)
    want_reason: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        name="short work backfills before the top workload's earliest start",
        pending=[BIG, job("short").cpu(2).runtime(1800)],
        want_admitted=["short"],
        want_backfill=["short"],
        want_reason={"big": "earliest start in 50m00s"},
    ),
    Case(
        name="work that would run past the earliest start waits",
        pending=[BIG, job("long").cpu(2).runtime(2 * HOUR)],
        want_reason={"long": "capacity is held for big, which starts within 50m00s;"
                             " work with max_runtime up to 50m00s may backfill"},
    ),
    Case(
        name="work elsewhere is not held back",
        nodes=[node("n1", 8, 32), node("n2", 4, 16)],
        pending=[BIG, job("long").cpu(4).runtime(2 * HOUR)],
        want_admitted=["long"],
        want_backfill=["long"],
    ),
    Case(
        name="without backfill protection (Kueue-like) long work jumps ahead",
        config=SchedulerConfig(backfill=False),
        pending=[BIG, job("long").cpu(2).runtime(2 * HOUR)],
        want_admitted=["long"],
    ),
    Case(
        name="top workload that never fits while reservations hold capacity",
        pending=[job("huge").cpu(8).queued(NOW - 5 * HOUR)],
        running=[],
        nodes=[node("n1", 8, 32)],
        want_admitted=["huge"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_backfill_cases(case: Case) -> None:
    d = schedule(snapshot(nodes=case.nodes, groups=[ROOMY], running=case.running,
                          pending=case.pending), case.config)
    assert sorted(d.admitted_ids) == sorted(case.want_admitted)
    assert sorted(a.workload_id for a in d.admissions if a.backfill) == sorted(case.want_backfill)
    for wid, text in case.want_reason.items():
        assert text in d.reasons[wid], d.reasons[wid]


def _earliest_start(reason: str) -> str:
    m = re.search(r"earliest start in (\S+),", reason)
    assert m, reason
    return m.group(1)


def test_backfill_never_delays_the_top_workload() -> None:
    """Apply a cycle's backfill admissions; the top workload's earliest start is unchanged."""
    nodes = [node("n1", 8, 32), node("n2", 8, 32)]
    running = [job("r1").cpu(6).runtime(HOUR).running("n1", start=NOW - 600),
               job("r2").cpu(4).runtime(2 * HOUR).running("n2", start=NOW - 600)]
    top = job("top").cpu(8).queued(NOW - 5 * HOUR)
    small = [job(f"s{i}").cpu(1).runtime(600 * (i + 1)).seq(i) for i in range(10)]
    d1 = schedule(snapshot(nodes=nodes, groups=[ROOMY], running=running, pending=[top, *small]))
    assert d1.admitted_ids, "something backfills"
    before = _earliest_start(d1.reasons["top"])
    # The next cycle, at the same moment, with the backfilled work running.
    admitted = {a.workload_id: a for a in d1.admissions}
    now_running = list(running)
    rest = []
    for b in small:
        a = admitted.get(b.id)
        if a is None:
            rest.append(b)
        else:
            now_running.append(b.running(*a.placement["main"], start=NOW))
    d2 = schedule(snapshot(nodes=nodes, groups=[ROOMY], running=now_running,
                           pending=[top, *rest]))
    assert _earliest_start(d2.reasons["top"]) == before == "50m00s"
    # And every backfilled workload ends by then.
    for a in d1.admissions:
        w = next(b for b in small if b.id == a.workload_id).build()
        assert w.max_runtime_s <= 3000 or "n2" in a.placement["main"]


def test_work_blocked_only_by_held_capacity_waits_instead_of_preempting() -> None:
    """A group under its nominal quota does not preempt borrowers to go around
    the top workload: it waits its turn behind it."""
    groups = [group("ml", cpu=20, mem=256), group("ads", cpu=4, mem=64),
              group("rec", cpu=1, mem=64)]
    nodes = [node("n1", 8, 64), node("n2", 8, 64)]
    running = [job("c1").group("ml").cpu(4).runtime(HOUR).running("n1", start=NOW),
               job("b1").group("rec").cpu(2).runtime(HOUR).running("n1", start=NOW),
               job("c2").group("ml").cpu(8).runtime(5 * HOUR).running("n2", start=NOW)]
    top = job("top").group("ml").cpu(8).queued(NOW - 5 * HOUR)
    w = job("w").group("ads").cpu(2).runtime(3 * HOUR)
    d = schedule(snapshot(nodes=nodes, groups=groups, running=running, pending=[top, w]))
    assert "earliest start in 1h00m" in d.reasons["top"]
    assert d.preemptions == []
    assert "capacity is held for top" in d.reasons["w"]
