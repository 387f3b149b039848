"""Reclaim without thrash: capacity freed by victims is held for the claimant.

A tiny driver applies each cycle's decisions the way the server does
(admitted -> running, preempted -> stopping, holds recorded and released) and
lets victims exit at chosen cycles, back into the queue with their queue time.
The overcommitted setup is the one that thrashed: nominal quotas 8 + 2 + 4
CPUs on two 4-CPU nodes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plinth.scheduler import SchedulerConfig, Snapshot, schedule

from .builders import NOW, group, job, node

CYCLE_S = 1.0


@dataclass
class Driver:
    """Cycles over a snapshot, applying decisions; ``exits[k]``: ids whose stopping
    replicas are gone before cycle ``k``."""

    snap: Snapshot
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    preempted: Counter = field(default_factory=Counter)
    admitted_at: dict[str, int] = field(default_factory=dict)

    def run(self, cycles: int, exits: dict[int, set[str]]) -> None:
        s = self.snap
        for k in range(cycles):
            gone = exits.get(k, set())
            back = [dataclasses.replace(w, preempting=False, start_time=None, placements=None)
                    for w in s.running if w.id in gone and w.preempting]
            s = dataclasses.replace(
                s, now=NOW + k * CYCLE_S,
                running=tuple(w for w in s.running if w not in back and w.id not in gone),
                pending=s.pending + tuple(back))
            d = schedule(s, self.config)
            pending = {w.id: w for w in s.pending}
            running = list(s.running)
            for a in d.admissions:
                w = pending.pop(a.workload_id)
                running.append(dataclasses.replace(w, start_time=s.now, placements=a.placement))
                self.admitted_at[w.id] = k
            for p in d.preemptions:
                self.preempted[p.workload_id] += 1
                running = [dataclasses.replace(w, preempting=True) if w.id == p.workload_id
                           else w for w in running]
            holds = {h.claimant: h for h in s.reclaim_holds}
            for c in d.released_holds:
                holds.pop(c, None)
            holds.update({h.claimant: h for h in d.holds})
            s = dataclasses.replace(s, running=tuple(running), pending=tuple(pending.values()),
                                    reclaim_holds=tuple(holds.values()))
        self.snap = s


def _overcommitted(one_node: bool) -> Snapshot:
    """ml fills 4 CPUs in its quota, rec runs 2 in its quota plus two borrowed 1-CPU
    jobs (b1, b2, on one node or one per node); ads (8 CPUs nominal, nothing running)
    submits a claimant of two 1-CPU replicas. Victims back in the queue rank ahead of the claimant
    (older queue time)."""
    groups = [group("ads", 8, 64), group("rec", 2, 64), group("ml", 4, 64)]
    where = ({"m1": "n2", "m2": "n2", "r1": "n1", "r2": "n1", "b1": "n1", "b2": "n1"}
             if one_node else
             {"m1": "n1", "m2": "n2", "r1": "n1", "r2": "n2", "b1": "n1", "b2": "n2"})
    running = [
        job("m1").group("ml").cpu(2).running(where["m1"]),
        job("m2").group("ml").cpu(2).running(where["m2"]),
        job("r1").group("rec").cpu(1).running(where["r1"], start=NOW - 3000),
        job("r2").group("rec").cpu(1).running(where["r2"], start=NOW - 3000),
        job("b1").group("rec").cpu(1).queued(NOW - 7200).running(where["b1"], start=NOW - 60),
        job("b2").group("rec").cpu(1).queued(NOW - 7200).running(where["b2"], start=NOW - 50),
    ]
    return Snapshot(now=NOW, nodes=(node("n1", 4, 32), node("n2", 4, 32)),
                    groups=tuple(groups), running=tuple(j.build() for j in running),
                    pending=(job("claim").group("ads").cpu(1).replicas(2).build(),))


@pytest.mark.parametrize("one_node", [True, False], ids=["one node", "two nodes"])
@pytest.mark.parametrize("exits", [
    {3: {"b1", "b2"}},                # together
    {2: {"b1"}, 5: {"b2"}},           # one by one, cycles in between
    {2: {"b2"}, 6: {"b1"}},           # the other order
], ids=["together", "one by one", "reverse order"])
def test_each_victim_preempted_once_and_claimant_starts(one_node, exits) -> None:
    drv = Driver(_overcommitted(one_node))
    last_exit = max(exits)
    drv.run(last_exit + 3, exits)
    assert drv.preempted == Counter({"b1": 1, "b2": 1})
    # Admitted in the cycle that first sees the last victim gone.
    assert drv.admitted_at["claim"] == last_exit
    assert drv.snap.reclaim_holds == ()
    # No victim took the capacity back while the claimant waited.
    for vid in ("b1", "b2"):
        assert vid not in drv.admitted_at or drv.admitted_at[vid] >= last_exit


def test_hold_keeps_a_victim_off_its_freed_capacity() -> None:
    drv = Driver(_overcommitted(one_node=False))
    drv.run(3, {2: {"b1"}})
    s = drv.snap
    assert [w.id for w in s.pending if w.id != "claim"] == ["b1"]
    d = schedule(s)
    assert "b1" not in d.admitted_ids and not d.preemptions
    assert "reclaiming" in d.reasons["claim"]
    (hold,) = s.reclaim_holds
    assert hold.claimant == "claim" and set(hold.victim_ids) == {"b1", "b2"}


def test_without_the_hold_the_victim_would_retake_it() -> None:
    """The regression the hold fixes: drop the hold and b1 borrows its CPU again."""
    drv = Driver(_overcommitted(one_node=False))
    drv.run(3, {2: {"b1"}})
    d = schedule(dataclasses.replace(drv.snap, reclaim_holds=()))
    assert "b1" in d.admitted_ids


@pytest.mark.parametrize("how", ["cancelled", "expired"])
def test_hold_released_when_the_claimant_gives_up(how) -> None:
    drv = Driver(_overcommitted(one_node=False))
    drv.run(3, {2: {"b1"}})
    s = drv.snap
    if how == "cancelled":
        s = dataclasses.replace(s, pending=tuple(w for w in s.pending if w.id != "claim"))
        want = "no longer pending"
    else:
        s = dataclasses.replace(s, now=s.now + SchedulerConfig().reclaim_hold_s + 1)
        want = "gave up"
    d = schedule(s)
    assert want in d.released_holds["claim"]
    # The freed capacity is everyone's again: the victim back in the queue may use it.
    assert "b1" in d.admitted_ids


@settings(max_examples=40, deadline=None)
@given(one_node=st.booleans(), first=st.integers(1, 6), gap=st.integers(0, 6),
       order=st.booleans())
def test_any_exit_schedule_preempts_each_victim_once(one_node, first, gap, order) -> None:
    """Property over exit schedules: victims exit at any cycles (together, or apart with
    any number of cycles between): one preemption each, the claimant starts in the
    cycle that first sees both gone, and nothing else ever takes the held capacity."""
    a, b = ("b1", "b2") if order else ("b2", "b1")
    exits = {first: {a, b}} if gap == 0 else {first: {a}, first + gap: {b}}
    drv = Driver(_overcommitted(one_node))
    last = max(exits)
    drv.run(last + 2, exits)
    assert drv.preempted == Counter({"b1": 1, "b2": 1})
    assert drv.admitted_at["claim"] == last
    assert set(drv.admitted_at) == {"claim"}  # no victim re-admitted meanwhile
