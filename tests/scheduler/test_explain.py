"""``explain``: the text users see for each way a workload can wait."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from plinth.scheduler import Reservation, SchedulerConfig, User, explain, schedule

from .builders import HOUR, NOW, group, job, node, res, snapshot

NODES = [node("g1", 96, 768, 8), node("g2", 96, 768, 8), node("c1", 64, 256)]


@dataclass
class Case:
    name: str
    groups: list
    pending: list
    target: str
    running: list = field(default_factory=list)
    users: list = field(default_factory=list)
    reservations: list = field(default_factory=list)
    nodes: list = field(default_factory=lambda: NODES)
    want: list[str] = field(default_factory=list)


CASES = [
    Case(
        name="group quota with borrow limit",
        groups=[group("ads", cpu=96, mem=768, gpu=8, borrow=res(0, 0, 4)),
                group("rec", cpu=96, mem=768, gpu=8)],
        running=[job("r1").gpus(8).cpu(8).running("g1"), job("r2").gpus(4).cpu(4).running("g2")],
        pending=[job("p").gpus(1).cpu(1)],
        target="p",
        want=["waits: group ads: gpu 12/8 in use, borrow limit 4 reached (4 borrowed)"],
    ),
    Case(
        name="no borrowing allowed",
        groups=[group("ads", cpu=96, mem=768, gpu=8, borrow=res(0, 0, 0)),
                group("rec", cpu=96, mem=768, gpu=8)],
        running=[job("r1").gpus(8).cpu(8).running("g1")],
        pending=[job("p").gpus(1).cpu(1)],
        target="p",
        want=["waits: group ads: gpu 8/8 in use, borrowing not allowed"],
    ),
    Case(
        name="personal cap",
        groups=[group("ads", cpu=96, mem=768, gpu=8)],
        users=[User("bob", "ads", cap=res(4, 64, 1))],
        running=[job("r1").user("bob").gpus(1).cpu(2).running("g1")],
        pending=[job("p").user("bob").gpus(1).cpu(1)],
        target="p",
        want=["waits: user bob: gpu 1/1 in use, needs 1 (personal cap)"],
    ),
    Case(
        name="lenders have nothing idle",
        groups=[group("ads", cpu=8, mem=64), group("rec", cpu=8, mem=64, lend=res(0, 0))],
        running=[job("r1").cpu(8).running("c1")],
        pending=[job("p").cpu(2)],
        target="p",
        want=["waits: group ads: cpu 8/8 in use, needs 2; other groups have only 0 cpu idle"],
    ),
    Case(
        name="capacity, with the earliest start",
        groups=[group("ads", cpu=512, mem=4096, gpu=32)],
        running=[job("r1").gpus(8).cpu(8).runtime(2 * HOUR).running("g1", start=NOW - HOUR),
                 job("r2").gpus(8).cpu(8).runtime(3 * HOUR).running("g2", start=NOW - HOUR)],
        pending=[job("p").gpus(8).cpu(8)],
        target="p",
        want=[("no node has room for it now (free: cpu=240,memory=1790Gi); earliest start"
               " in 1h00m")],
    ),
    Case(
        name="held for the top workload",
        groups=[group("ads", cpu=512, mem=4096, gpu=32)],
        running=[job("r1").gpus(4).cpu(8).runtime(2 * HOUR).running("g1", start=NOW - HOUR),
                 job("r2").gpus(8).cpu(8).runtime(3 * HOUR).running("g2", start=NOW - HOUR)],
        pending=[job("top").gpus(8).cpu(8).queued(NOW - 5 * HOUR),
                 job("p").gpus(4).cpu(8).runtime(4 * HOUR)],
        target="p",
        want=[("capacity is held for top, which starts within 1h00m; work with max_runtime"
               " up to 1h00m may backfill")],
    ),
    Case(
        name="booked into a reservation",
        groups=[group("ads", cpu=512, mem=4096, gpu=32)],
        reservations=[Reservation("nb-tomorrow", res(4, 16), start=NOW + 20 * HOUR,
                                  end=NOW + 22 * HOUR, user="ads-user")],
        pending=[job("p").cpu(4).booked("nb-tomorrow").kind("notebook")],
        target="p",
        want=["workload p (notebook, group ads, user ads-user)",
              "booked into reservation nb-tomorrow, which starts in 20h00m"],
    ),
    Case(
        name="reclaim in progress",
        groups=[group("ads", cpu=32, mem=128), group("rec", cpu=32, mem=128)],
        nodes=[node("c1", 64, 256)],
        running=[job("a1").cpu(64).running("c1")],
        pending=[job("p").group("rec").cpu(8)],
        target="p",
        want=["reclaiming: waiting for 1 borrowed workload(s) of group ads to stop"],
    ),
    Case(
        name="never fits the group's largest job",
        groups=[group("ads", cpu=512, mem=4096, gpu=32, max_job=res(16, 64, 2))],
        pending=[job("p").gpus(4).cpu(8)],
        target="p",
        want=["above the largest job allowed (cpu=16,memory=64Gi,gpu=2); it will never start"],
    ),
    Case(
        name="admitted",
        groups=[group("ads", cpu=512, mem=4096, gpu=32)],
        pending=[job("p").role("ps", 1, cpu=2).role("worker", 2, cpu=4)],
        target="p",
        want=["admitted this cycle on ps: c1; worker: c1, c1"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_explain_cases(case: Case) -> None:
    s = snapshot(nodes=case.nodes, groups=case.groups, running=case.running,
                 pending=case.pending, users=case.users, reservations=case.reservations)
    text = explain(s, SchedulerConfig(), case.target)
    for want in case.want:
        assert want in text, text


def test_explain_layout() -> None:
    s = snapshot(nodes=[node("c1", 8, 32)],
                 groups=[group("ads", cpu=2, mem=8, borrow=res(0, 0))],
                 pending=[job("p").cpu(4).runtime(2 * HOUR).queued(NOW - 90)])
    cfg = SchedulerConfig()
    d = schedule(s, cfg)
    text = explain(s, cfg, "p", decisions=d)
    lines = text.splitlines()
    assert lines[0] == ("workload p (job, group ads, user ads-user): pending, position 1 of 1,"
                        " waiting 1m30s")
    assert lines[1] == ("  requests cpu=4,memory=1Gi [main 1x(cpu=4,memory=1Gi)],"
                        " max_runtime 2h00m, priority normal")
    assert lines[2].startswith("  score ") and "aging 0.00x4" in lines[2]
    assert lines[3] == "  waits: group ads: cpu 0/2 in use, borrowing not allowed"


def test_explain_unknown_workload() -> None:
    s = snapshot(nodes=NODES, groups=[group("ads", cpu=1, mem=1)])
    with pytest.raises(KeyError, match="'nope' is not pending"):
        explain(s, SchedulerConfig(), "nope")
