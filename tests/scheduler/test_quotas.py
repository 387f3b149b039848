"""Group quota, personal caps, expansions and admin caps (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from plinth.scheduler import Expansion, Outcome, SchedulerConfig, User, group_status, schedule

from .builders import HOUR, NOW, group, job, node, res, snapshot

NO_BORROW = res(0, 0, 0)


@dataclass
class Case:
    name: str
    groups: list
    pending: list
    running: list = field(default_factory=list)
    users: list = field(default_factory=list)
    expansions: list = field(default_factory=list)
    nodes: list = field(default_factory=lambda: [node("n1", 16, 64), node("g1", 32, 64, 8)])
    now: float = NOW
    want_admitted: list[str] = field(default_factory=list)
    want_reason: dict[str, str] = field(default_factory=dict)  # id -> substring


CASES = [
    Case(
        name="group quota admits up to nominal, in queue order",
        groups=[group("ads", cpu=4, mem=16, borrow=NO_BORROW)],
        pending=[job("a").cpu(2).queued(NOW - 30), job("b").cpu(2).queued(NOW - 20),
                 job("c").cpu(2).queued(NOW - 10)],
        want_admitted=["a", "b"],
        want_reason={"c": "group ads: cpu 4/4 in use, borrowing not allowed"},
    ),
    Case(
        name="gpu quota counts running work",
        groups=[group("ads", cpu=16, mem=64, gpu=8, borrow=NO_BORROW)],
        running=[job("r").gpus(8).cpu(8).running("g1")],
        pending=[job("p").gpus(1)],
        want_admitted=[],
        want_reason={"p": "group ads: gpu 8/8 in use"},
    ),
    Case(
        name="personal cap stops one user, not the group",
        groups=[group("ads", cpu=8, mem=32, borrow=NO_BORROW)],
        users=[User("bob", "ads", cap=res(2, 8))],
        pending=[job("b1").user("bob").cpu(2), job("b2").user("bob").cpu(2).seq(1),
                 job("c1").user("carol").cpu(2).seq(2)],
        want_admitted=["b1", "c1"],
        want_reason={"b2": "user bob: cpu 2/2 in use, needs 2 (personal cap)"},
    ),
    Case(
        name="active group expansion adds to nominal",
        groups=[group("ads", cpu=2, mem=16, borrow=NO_BORROW)],
        expansions=[Expansion(add=res(2), start=NOW - 10, end=NOW + HOUR, group="ads",
                              reason="deadline", granted_by="admin")],
        pending=[job("a").cpu(4)],
        want_admitted=["a"],
    ),
    Case(
        name="expansion not yet started does not count",
        groups=[group("ads", cpu=2, mem=16, borrow=NO_BORROW)],
        expansions=[Expansion(add=res(2), start=NOW + 10, end=NOW + HOUR, group="ads")],
        pending=[job("a").cpu(4)],
        want_reason={"a": "group ads: cpu 0/2 in use"},
    ),
    Case(
        name="expired expansion no longer counts",
        groups=[group("ads", cpu=2, mem=16, borrow=NO_BORROW)],
        expansions=[Expansion(add=res(2), start=NOW - HOUR, end=NOW, group="ads")],
        pending=[job("a").cpu(4)],
        want_reason={"a": "group ads: cpu 0/2 in use"},
    ),
    Case(
        name="user expansion raises a personal cap",
        groups=[group("ads", cpu=8, mem=32, borrow=NO_BORROW)],
        users=[User("bob", "ads", cap=res(2, 8))],
        expansions=[Expansion(add=res(2, 8), start=NOW - 1, end=NOW + 1, user="bob")],
        pending=[job("b").user("bob").cpu(4)],
        want_admitted=["b"],
    ),
    Case(
        name="largest job cap: never starts, says so",
        groups=[group("ads", cpu=16, mem=64, max_job=res(4, 16))],
        pending=[job("big").cpu(8)],
        want_reason={"big": "above the largest job allowed (cpu=4,memory=16Gi); it will never"},
    ),
    Case(
        name="longest max_runtime cap",
        groups=[group("ads", cpu=16, mem=64, max_runtime=2 * HOUR)],
        pending=[job("long").runtime(3 * HOUR)],
        want_reason={"long": "max_runtime 3h00m is above the group's limit 2h00m"},
    ),
    Case(
        name="concurrent workloads per user",
        groups=[group("ads", cpu=16, mem=64, per_user=1)],
        running=[job("r").user("bob").running("n1")],
        pending=[job("b").user("bob"), job("c").user("carol").seq(1)],
        want_admitted=["c"],
        want_reason={"b": "user bob: 1/1 workloads running (group ads's limit per user)"},
    ),
    Case(
        name="unknown group is reported, not crashed on",
        groups=[group("ads", cpu=16, mem=64)],
        pending=[job("x").group("nope")],
        want_reason={"x": "unknown group 'nope'"},
    ),
    Case(
        name="negative request or zero max_runtime is reported, not scheduled",
        groups=[group("ads", cpu=16, mem=64)],
        pending=[job("neg").cpu(-1), job("zero").runtime(0).seq(1), job("ok").seq(2)],
        want_admitted=["ok"],
        want_reason={"neg": "invalid request: resources must be >= 0",
                     "zero": "max_runtime > 0 seconds"},
    ),
    Case(
        name="replica larger than every node never starts",
        groups=[group("ads", cpu=96, mem=256)],
        pending=[job("x").cpu(48)],
        want_reason={"x": "no node is large enough for a replica of cpu=48,memory=1Gi"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_quota_cases(case: Case) -> None:
    s = snapshot(nodes=case.nodes, groups=case.groups, running=case.running,
                 pending=case.pending, users=case.users, expansions=case.expansions,
                 now=case.now)
    d = schedule(s)
    assert sorted(d.admitted_ids) == sorted(case.want_admitted)
    for wid, text in case.want_reason.items():
        assert d.outcomes[wid] is Outcome.NO_FIT
        assert text in d.reasons[wid], d.reasons[wid]
    for wid in case.want_admitted:
        assert d.outcomes[wid] is Outcome.FIT
        assert wid not in d.reasons


def test_expansion_takes_effect_and_expires_by_itself() -> None:
    """The same state, three moments: before, during and after the window."""
    exp = Expansion(add=res(4), start=NOW, end=NOW + HOUR, group="ads", reason="launch")
    kw = {"nodes": [node("n1", 16, 64)],
          "groups": [group("ads", cpu=4, mem=32, borrow=NO_BORROW)],
          "pending": [job("a").cpu(8)], "expansions": [exp]}
    assert schedule(snapshot(now=NOW - 1, **kw)).admitted_ids == []
    assert schedule(snapshot(now=NOW, **kw)).admitted_ids == ["a"]
    assert schedule(snapshot(now=NOW + HOUR, **kw)).admitted_ids == []


def test_quota_reason_mentions_expansion() -> None:
    exp = Expansion(add=res(0, 0, 2), start=NOW - 1, end=NOW + HOUR, group="ads")
    s = snapshot(nodes=[node("g1", 16, 64, 8)],
                 groups=[group("ads", cpu=16, mem=64, gpu=2, borrow=NO_BORROW)],
                 running=[job("r").gpus(4).running("g1")], pending=[job("p").gpus(1)],
                 expansions=[exp])
    d = schedule(s)
    assert "gpu 4/4 (incl. +2 expansion) in use" in d.reasons["p"]


def test_admissions_are_counted_within_the_cycle() -> None:
    """Ten 1-cpu jobs against a 4-cpu quota: exactly four start in one cycle."""
    s = snapshot(nodes=[node("n1", 64, 256)],
                 groups=[group("ads", cpu=4, mem=64, borrow=NO_BORROW)],
                 pending=[job(f"j{i}").seq(i) for i in range(10)])
    d = schedule(s)
    assert d.admitted_ids == ["j0", "j1", "j2", "j3"]


def test_group_status_numbers() -> None:
    s = snapshot(
        nodes=[node("n1", 16, 64)],
        groups=[group("ads", cpu=2, mem=8), group("rec", cpu=6, mem=24, lend=res(4, 16))],
        running=[job("r").cpu(4).mem(2).running("n1")],
        expansions=[Expansion(add=res(1), start=NOW - 1, end=NOW + 1, group="ads")],
    )
    st = {g.name: g for g in group_status(s)}
    assert st["ads"].nominal == res(3, 8)
    assert st["ads"].expansion == res(1)
    assert st["ads"].used == res(4, 2)
    assert st["ads"].borrowed == res(1, 0)
    # ads borrows 1 cpu, necessarily from rec, the only lender with idle quota.
    assert st["rec"].lent == res(1, 0)
    assert st["rec"].lendable == res(3, 16)
    assert st["rec"].guaranteed == res(2, 8)


def test_config_rejects_bad_values_with_what_to_fix() -> None:
    with pytest.raises(ValueError, match="aging_saturation_s must be > 0"):
        SchedulerConfig(aging_saturation_s=0)
    with pytest.raises(ValueError, match="priority class 'x'"):
        SchedulerConfig(priority_classes={"x": 2.0})
    with pytest.raises(ValueError, match="reclaim_after_s must be >= 0"):
        SchedulerConfig(reclaim_after_s=-1)


def test_config_from_plain_values() -> None:
    from plinth.scheduler import Ordering, config_from_dict

    cfg = config_from_dict({"weights": {"aging": 2, "priority": 3}, "ordering": "fifo",
                            "aging_saturation_s": 600})
    assert cfg.weights.aging == 2.0 and cfg.weights.priority == 3.0
    assert cfg.weights.runtime == 1.0 and cfg.ordering is Ordering.FIFO
    cfg = config_from_dict({"reclaim_after_s": 3600, "reclaim_least_lost_first": True})
    assert cfg.reclaim_after_s == 3600 and cfg.reclaim_least_lost_first
    with pytest.raises(ValueError, match="unknown scheduler setting 'agin'"):
        config_from_dict({"agin": 1})
    with pytest.raises(ValueError, match="unknown score weight 'speed'"):
        config_from_dict({"weights": {"speed": 1}})
