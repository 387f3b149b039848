"""Borrowing, lending limits and reclaim (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from plinth.scheduler import Ordering, Outcome, SchedulerConfig, Weights, schedule

from .builders import NOW, group, job, node, res, snapshot


@dataclass
class Case:
    name: str
    groups: list
    nodes: list
    pending: list
    running: list = field(default_factory=list)
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    want_admitted: list[str] = field(default_factory=list)
    want_borrowing: list[str] = field(default_factory=list)
    want_preempted: list[str] = field(default_factory=list)
    want_outcome: dict[str, Outcome] = field(default_factory=dict)
    want_reason: dict[str, str] = field(default_factory=dict)
    want_reason_absent: dict[str, str] = field(default_factory=dict)


BIG = [node("n1", 32, 128)]

CASES = [
    Case(
        name="borrows idle quota up to borrow_limit",
        groups=[group("ads", cpu=2, mem=64, borrow=res(2, 0)), group("rec", cpu=6, mem=64)],
        nodes=BIG,
        pending=[job("a1").cpu(2).seq(1), job("a2").cpu(2).seq(2), job("a3").cpu(2).seq(3)],
        want_admitted=["a1", "a2"],
        want_borrowing=["a2"],
        want_reason={"a3": "group ads: cpu 4/2 in use, borrow limit 2 reached (2 borrowed)"},
    ),
    Case(
        name="lend_limit caps what a lender gives",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=6, mem=64, lend=res(2, 64))],
        nodes=BIG,
        pending=[job("a1").cpu(2).seq(1), job("a2").cpu(2).seq(2), job("a3").cpu(2).seq(3)],
        want_admitted=["a1", "a2"],
        want_borrowing=["a2"],
        want_reason={"a3": "other groups have only 0 cpu idle to lend"},
    ),
    Case(
        name="borrowing switched off: strict quotas",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=6, mem=64)],
        nodes=BIG,
        config=SchedulerConfig(borrowing=False),
        pending=[job("a1").cpu(2).seq(1), job("a2").cpu(2).seq(2)],
        want_admitted=["a1"],
        want_reason={"a2": "borrowing disabled"},
    ),
    Case(
        name="only short work may borrow when borrow_max_runtime_s is set",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=6, mem=64)],
        nodes=BIG,
        config=SchedulerConfig(borrow_max_runtime_s=2 * 3600),
        pending=[job("a1").cpu(2).seq(1), job("long").cpu(2).runtime(4 * 3600).seq(2),
                 job("short").cpu(2).runtime(3600).seq(3)],
        want_admitted=["a1", "short"],
        want_borrowing=["short"],
        want_reason={"long": "only work with max_runtime up to 2h00m may borrow"
                             " (it declares 4h00m)"},
    ),
    Case(
        name="the group using least of its own quota borrows first",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64),
                group("ml", cpu=4, mem=64)],
        nodes=BIG,
        running=[job("a0").cpu(4).running("n1"), job("r0").group("rec").cpu(2).running("n1")],
        pending=[job("a1").cpu(2).queued(NOW - 3600), job("r1").group("rec").cpu(2)],
        want_admitted=["r1"],
        want_borrowing=["r1"],
        want_reason={"a1": "other groups have only 0 cpu idle to lend"},
    ),
    Case(
        name="work inside its own quota goes before borrowing work",
        groups=[group("ads", cpu=4, mem=64), group("rec", cpu=4, mem=64)],
        nodes=[node("n1", 8, 64)],
        running=[job("a0").cpu(4).running("n1")],
        pending=[job("a1").cpu(4).queued(NOW - 3600), job("r1").group("rec").cpu(4)],
        want_admitted=["r1"],
        want_reason={"a1": "group ads: cpu 4/4 in use"},
    ),
    Case(
        name="reclaim preempts the newest borrower only",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        running=[job("a1").cpu(2).running("n1", start=NOW - 900),
                 job("a2").cpu(2).running("n1", start=NOW - 300)],
        pending=[job("r1").group("rec").cpu(2)],
        want_preempted=["a2"],
        want_outcome={"r1": Outcome.PREEMPT},
        want_reason={"r1": "reclaiming: waiting for 1 borrowed workload(s) of group ads"},
    ),
    Case(
        name="reclaim preempts no more than needed",
        groups=[group("ads", cpu=1, mem=64), group("rec", cpu=4, mem=64)],
        nodes=[node("n1", 5, 64)],
        running=[job(f"a{i}").cpu(1).running("n1", start=NOW - 1000 + 100 * i)
                 for i in range(5)],
        pending=[job("r1").group("rec").cpu(2)],
        want_preempted=["a3", "a4"],
        want_outcome={"r1": Outcome.PREEMPT},
    ),
    Case(
        name="reclaim takes the lowest priority class first",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        running=[job("old-low").cpu(1).priority("low").running("n1", start=NOW - 900),
                 job("new-high").cpu(1).priority("high").running("n1", start=NOW - 100),
                 job("nominal").cpu(2).running("n1", start=NOW - 2000)],
        pending=[job("r1").group("rec").cpu(1)],
        want_preempted=["old-low"],
        want_outcome={"r1": Outcome.PREEMPT},
    ),
    Case(
        name="reclaim_least_lost_first: the least work lost goes first, whatever the class",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        config=SchedulerConfig(reclaim_least_lost_first=True),
        running=[job("old-low").cpu(1).priority("low").running("n1", start=NOW - 9000),
                 job("new-high").cpu(1).priority("high").running("n1", start=NOW - 100),
                 job("nominal").cpu(2).running("n1", start=NOW - 20000)],
        pending=[job("r1").group("rec").cpu(1)],
        want_preempted=["new-high"],
        want_outcome={"r1": Outcome.PREEMPT},
    ),
    Case(
        name="reclaim_least_lost_first: equal loss falls back to the lowest class",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        config=SchedulerConfig(reclaim_least_lost_first=True),
        running=[job("b-high").cpu(1).priority("high").running("n1", start=NOW - 600),
                 job("b-low").cpu(1).priority("low").running("n1", start=NOW - 600),
                 job("nominal").cpu(2).running("n1", start=NOW - 20000)],
        pending=[job("r1").group("rec").cpu(1)],
        want_preempted=["b-low"],
        want_outcome={"r1": Outcome.PREEMPT},
    ),
    Case(
        name="reclaim_after_s: a fresh owner waits for borrowers to end by themselves",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        config=SchedulerConfig(reclaim_after_s=3600),
        running=[job("a1").cpu(2).running("n1", start=NOW - 900),
                 job("a2").cpu(2).running("n1", start=NOW - 300)],
        pending=[job("r1").group("rec").cpu(2).queued(NOW - 600)],
        want_outcome={"r1": Outcome.NO_FIT},
        want_reason={"r1": "reclaim of lent quota starts in 50m"},
    ),
    Case(
        name="reclaim_after_s: no promise of reclaim when nobody borrows",
        groups=[group("ads", cpu=4, mem=64), group("rec", cpu=4, mem=64)],
        nodes=[node("n1", 4, 64)],  # nominal quotas add up to more than the nodes
        config=SchedulerConfig(reclaim_after_s=3600),
        running=[job("a1").cpu(4).running("n1")],
        pending=[job("r1").group("rec").cpu(2)],
        want_reason={"r1": "no node has room for it now (free: cpu=0"},
        want_reason_absent={"r1": "reclaim"},
    ),
    Case(
        name="reclaim_after_s: an owner that waited long enough reclaims",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        config=SchedulerConfig(reclaim_after_s=3600),
        running=[job("a1").cpu(2).running("n1", start=NOW - 900),
                 job("a2").cpu(2).running("n1", start=NOW - 300)],
        pending=[job("r1").group("rec").cpu(2).queued(NOW - 3600)],
        want_preempted=["a2"],
        want_outcome={"r1": Outcome.PREEMPT},
    ),
    Case(
        name="reclaim_after_s: an older owner of the group still reclaims this cycle",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        config=SchedulerConfig(reclaim_after_s=3600, ordering=Ordering.SCORE,
                               weights=Weights(aging=0.0, runtime=1.0)),
        running=[job("a1").cpu(2).running("n1", start=NOW - 900),
                 job("a2").cpu(2).running("n1", start=NOW - 300)],
        # young ranks first (shorter runtime) but may not reclaim yet; old may.
        pending=[job("young").group("rec").cpu(2).runtime(600).queued(NOW - 60).seq(1),
                 job("old").group("rec").cpu(2).runtime(7200).queued(NOW - 7200).seq(2)],
        want_preempted=["a2"],
        want_outcome={"old": Outcome.PREEMPT, "young": Outcome.NO_FIT},
    ),
    Case(
        name="reclaim preempts a whole gang, once",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=4, mem=64)],
        nodes=[node("n1", 3, 64), node("n2", 3, 64)],
        running=[job("a-nom").cpu(2).running("n1", start=NOW - 900),
                 job("a-gang").cpu(1).replicas(4).running("n1", "n2", "n2", "n2",
                                                        start=NOW - 100)],
        pending=[job("r1").group("rec").cpu(2)],
        want_preempted=["a-gang"],
        want_outcome={"r1": Outcome.PREEMPT},
    ),
    Case(
        name="no reclaim from groups within their nominal",
        groups=[group("ads", cpu=4, mem=64), group("rec", cpu=4, mem=64)],
        nodes=[node("n1", 4, 64)],  # nominal quotas add up to more than the nodes
        running=[job("a1").cpu(4).running("n1")],
        pending=[job("r1").group("rec").cpu(2)],
        want_reason={"r1": "no node has room for it now"},
    ),
    Case(
        name="no reclaim when reclaim is off",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        config=SchedulerConfig(reclaim=False),
        running=[job("a1").cpu(2).running("n1"), job("a2").cpu(2).running("n1")],
        pending=[job("r1").group("rec").cpu(2)],
        want_reason={"r1": "its idle quota is lent to other groups"},
    ),
    Case(
        name="a victim already stopping is counted on, nobody new is preempted",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        running=[job("a1").cpu(2).running("n1", start=NOW - 900),
                 job("a2").cpu(2).running("n1", start=NOW - 300).preempting()],
        pending=[job("r1").group("rec").cpu(2)],
        want_outcome={"r1": Outcome.PREEMPT},
    ),
    Case(
        name="the reclaiming workload starts once the borrower has stopped",
        groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
        nodes=[node("n1", 4, 64)],
        running=[job("a1").cpu(2).running("n1", start=NOW - 900)],
        # a2 is back in the queue with its original (older) queue time, but it
        # would borrow again, so the owner's work goes first.
        pending=[job("a2").cpu(2).queued(NOW - 2000), job("r1").group("rec").cpu(2)],
        want_admitted=["r1"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_borrowing_cases(case: Case) -> None:
    s = snapshot(nodes=case.nodes, groups=case.groups, running=case.running,
                 pending=case.pending)
    d = schedule(s, case.config)
    assert sorted(d.admitted_ids) == sorted(case.want_admitted)
    assert sorted(a.workload_id for a in d.admissions if a.borrows) == sorted(case.want_borrowing)
    assert sorted(p.workload_id for p in d.preemptions) == sorted(case.want_preempted)
    for wid, outcome in case.want_outcome.items():
        assert d.outcomes[wid] is outcome
    for wid, text in case.want_reason.items():
        assert text in d.reasons[wid], d.reasons[wid]
    for wid, text in case.want_reason_absent.items():
        assert text not in d.reasons[wid], d.reasons[wid]


def test_preemption_names_who_and_why() -> None:
    s = snapshot(nodes=[node("n1", 4, 64)],
                 groups=[group("ads", cpu=2, mem=64), group("rec", cpu=2, mem=64)],
                 running=[job("a1").cpu(2).running("n1", start=NOW - 900),
                          job("a2").cpu(2).running("n1", start=NOW - 300)],
                 pending=[job("r1").group("rec").cpu(2)])
    (p,) = schedule(s).preemptions
    assert p.workload_id == "a2" and p.for_workload == "r1"
    assert p.reason == ("reclaim: group rec needs its lent quota back for r1;"
                        " group ads borrows cpu")


def test_guaranteed_part_is_never_lent() -> None:
    """rec lends at most 1 of its 4 cpu, so ads (nominal 0) gets 1 cpu, whatever it asks."""
    s = snapshot(nodes=[node("n1", 16, 64)],
                 groups=[group("ads", cpu=0, mem=16), group("rec", cpu=4, mem=16, lend=res(1, 16))],
                 pending=[job(f"a{i}").cpu(0.5).seq(i) for i in range(6)])
    d = schedule(s)
    assert d.admitted_ids == ["a0", "a1"]
