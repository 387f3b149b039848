"""Score factors, ordering, aging and fair share (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from plinth.scheduler import Ordering, SchedulerConfig, UsageRecord, Weights, schedule

from .builders import HOUR, NOW, group, job, node, res, snapshot

NODES = [node("c1", 64, 256), node("g1", 96, 768, 8)]
GROUPS = [group("ads", cpu=64, mem=512, gpu=8), group("rec", cpu=64, mem=512, gpu=8)]
ONLY = Weights(aging=0, runtime=0, size=0, fit=0, fair_share=0, priority=0)


def only(**w: float) -> SchedulerConfig:
    import dataclasses

    return SchedulerConfig(weights=dataclasses.replace(ONLY, **w))


@dataclass
class Case:
    name: str
    pending: list
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    history: list = field(default_factory=list)
    want_order: list[str] = field(default_factory=list)


CASES = [
    Case(
        name="aging: the longer wait first",
        config=only(aging=1),
        pending=[job("new").queued(NOW - 60), job("old").queued(NOW - 3 * HOUR)],
        want_order=["old", "new"],
    ),
    Case(
        name="runtime: the shorter max_runtime first",
        config=only(runtime=1),
        pending=[job("day").runtime(24 * HOUR), job("hour").runtime(HOUR)],
        want_order=["hour", "day"],
    ),
    Case(
        name="size: the smaller dominant share first",
        config=only(size=1),
        pending=[job("big").cpu(8), job("small").cpu(1)],
        want_order=["small", "big"],
    ),
    Case(
        name="priority class",
        config=only(priority=1),
        pending=[job("low").priority("low"), job("high").priority("high"), job("n")],
        want_order=["high", "n", "low"],
    ),
    Case(
        name="fit: GPU work that strands GPUs (too many cores per GPU) goes later",
        config=only(fit=1),
        pending=[job("greedy").gpus(1).cpu(48), job("balanced").gpus(1).cpu(12)],
        want_order=["balanced", "greedy"],
    ),
    Case(
        name="fit: GPU work that tiles a node goes before work that leaves holes",
        config=only(fit=1),
        pending=[job("three").gpus(3).cpu(36), job("four").gpus(4).cpu(48)],
        want_order=["four", "three"],
    ),
    Case(
        name="fair share: the group that used less recently goes first",
        config=only(fair_share=1),
        history=[UsageRecord("ads", NOW - 5 * HOUR, NOW - HOUR, res(64, 256, 8))],
        pending=[job("a").group("ads"), job("r").group("rec")],
        want_order=["r", "a"],
    ),
    Case(
        name="fair share: old usage decays",
        config=SchedulerConfig(weights=ONLY.__class__(aging=0, runtime=0, size=0, fit=0,
                                                      fair_share=1, priority=0),
                               fair_share_half_life_s=HOUR),
        history=[UsageRecord("ads", NOW - 50 * HOUR, NOW - 48 * HOUR, res(64, 256, 8)),
                 UsageRecord("rec", NOW - 2 * HOUR, NOW - HOUR, res(8, 32, 1))],
        pending=[job("a").group("ads"), job("r").group("rec")],
        want_order=["a", "r"],
    ),
    Case(
        name="ties: queue time, then submission order",
        config=only(),
        pending=[job("b").seq(2), job("a").seq(1), job("c").queued(NOW - 10)],
        want_order=["c", "a", "b"],
    ),
    Case(
        name="FIFO ordering ignores the score",
        config=SchedulerConfig(ordering=Ordering.FIFO),
        pending=[job("young-high").priority("high").queued(NOW - 10),
                 job("old-low").priority("low").runtime(24 * HOUR).queued(NOW - 20)],
        want_order=["old-low", "young-high"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_order_cases(case: Case) -> None:
    d = schedule(snapshot(nodes=NODES, groups=GROUPS, pending=case.pending,
                          history=case.history), case.config)
    assert d.queue == case.want_order


def test_every_factor_is_in_unit_interval_and_total_is_weighted_sum() -> None:
    pending = [job("a").gpus(3).cpu(50).runtime(30 * HOUR).queued(NOW - 30 * HOUR),
               job("b").cpu(0.5).runtime(30).priority("nope"), job("c").mem(700)]
    cfg = SchedulerConfig()
    d = schedule(snapshot(nodes=NODES, groups=GROUPS, pending=pending), cfg)
    for wid in d.queue:
        b = d.score(wid)
        assert all(0.0 <= v <= 1.0 for v in b.factors.values()), b
        assert b.total == pytest.approx(sum(b.weighted().values()))
    assert d.score("b").factors["priority"] == cfg.default_priority


def test_aging_bounds_the_wait() -> None:
    """A workload worst on every other factor, once aged to saturation, ranks
    ahead of fresh workloads that are best on every other factor."""
    cfg = SchedulerConfig(aging_saturation_s=6 * HOUR)
    history = [UsageRecord("ads", NOW - 2 * HOUR, NOW - HOUR, res(64, 256, 8))]
    worst = (job("worst").group("ads").priority("low").runtime(48 * HOUR).gpus(3).cpu(90)
             .queued(NOW - 6 * HOUR))
    fresh = [job(f"f{i}").group("rec").priority("high").runtime(60).cpu(0.1).mem(0.1).seq(i)
             for i in range(20)]
    d = schedule(snapshot(nodes=NODES, groups=GROUPS, pending=[*fresh, worst],
                          history=history), cfg)
    assert d.queue[0] == "worst"
    # Before saturation it still waits behind them.
    d2 = schedule(snapshot(nodes=NODES, groups=GROUPS, pending=[*fresh, worst],
                           history=history, now=NOW - 3 * HOUR), cfg)
    assert d2.queue[-1] == "worst"
