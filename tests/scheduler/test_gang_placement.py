"""Gang admission and placement (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from plinth.scheduler import PlacementPolicy, SchedulerConfig, schedule

from .builders import group, job, node, snapshot

ROOMY = group("ads", cpu=512, mem=4096, gpu=64)


@dataclass
class Case:
    name: str
    nodes: list
    pending: list
    running: list = field(default_factory=list)
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    want_placement: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    want_waiting: list[str] = field(default_factory=list)


CASES = [
    Case(
        name="gang: all replicas or nothing",
        nodes=[node("n1", 4, 16), node("n2", 4, 16)],
        pending=[job("g").cpu(3).replicas(3)],
        want_waiting=["g"],
    ),
    Case(
        name="gang across roles: every role placed",
        nodes=[node("n1", 4, 16), node("n2", 4, 16)],
        pending=[job("g").role("ps", 2, cpu=1).role("worker", 2, cpu=3)],
        want_placement={"g": {"ps": ("n1", "n2"), "worker": ("n1", "n2")}},
    ),
    Case(
        name="a gang that does not fit leaves nothing behind for the next workload",
        nodes=[node("n1", 4, 16)],
        pending=[job("big").cpu(2).replicas(3).seq(1), job("small").cpu(4).seq(2)],
        want_placement={"small": {"main": ("n1",)}},
        want_waiting=["big"],
    ),
    Case(
        name="best fit keeps the whole node free for a large job",
        nodes=[node("n1", 8, 32), node("n2", 4, 16)],
        running=[job("r").cpu(2).running("n2")],
        pending=[job("small").cpu(2).seq(1), job("large").cpu(8).seq(2)],
        want_placement={"small": {"main": ("n2",)}, "large": {"main": ("n1",)}},
    ),
    Case(
        name="first fit (baseline) fragments the large node",
        nodes=[node("n1", 8, 32), node("n2", 4, 16)],
        running=[job("r").cpu(2).running("n2")],
        config=SchedulerConfig(placement=PlacementPolicy.FIRST_FIT),
        pending=[job("small").cpu(2).seq(1), job("large").cpu(8).seq(2)],
        want_placement={"small": {"main": ("n1",)}},
        want_waiting=["large"],
    ),
    Case(
        name="GPU replicas go where the fewest GPUs are left over",
        nodes=[node("g8", 96, 768, 8), node("g4", 48, 384, 4)],
        running=[job("r").gpus(2).cpu(24).running("g4")],
        pending=[job("two").gpus(2).cpu(24)],
        want_placement={"two": {"main": ("g4",)}},
    ),
    Case(
        name="CPU work stays on CPU nodes while they have room",
        nodes=[node("g8", 96, 768, 8), node("c1", 64, 256)],
        pending=[job("cpu").cpu(8)],
        want_placement={"cpu": {"main": ("c1",)}},
    ),
    Case(
        name="CPU work is kept off GPU nodes by default",
        nodes=[node("g8", 96, 768, 8), node("c1", 4, 16)],
        pending=[job("cpu").cpu(8)],
        want_waiting=["cpu"],
    ),
    Case(
        name="on a cluster of GPU nodes only, CPU work runs on them",
        nodes=[node("g8", 96, 768, 8)],
        pending=[job("cpu").cpu(8)],
        want_placement={"cpu": {"main": ("g8",)}},
    ),
    Case(
        name="CPU work on a GPU node only beside what its free GPUs need",
        nodes=[node("g8", 96, 768, 8), node("c1", 4, 16)],
        config=SchedulerConfig(cpu_work_on_gpu_nodes=True),
        running=[job("r").gpus(4).cpu(48).running("g8")],
        # 4 free GPUs keep 48 cores; 0 cores are spare, so 8 cores do not fit.
        pending=[job("cpu").cpu(8)],
        want_waiting=["cpu"],
    ),
    Case(
        name="CPU work may use a GPU node whose GPUs are all taken",
        nodes=[node("g8", 96, 768, 8), node("c1", 4, 16)],
        config=SchedulerConfig(cpu_work_on_gpu_nodes=True),
        running=[job("r").gpus(8).cpu(48).running("g8")],
        pending=[job("cpu").cpu(8)],
        want_placement={"cpu": {"main": ("g8",)}},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gang_placement_cases(case: Case) -> None:
    s = snapshot(nodes=case.nodes, groups=[ROOMY], running=case.running, pending=case.pending)
    d = schedule(s, case.config)
    got = {a.workload_id: dict(a.placement) for a in d.admissions}
    assert got == case.want_placement
    for wid in case.want_waiting:
        assert wid in d.reasons


def test_placement_respects_node_capacity_for_many_gangs() -> None:
    """Sum of what each node receives never exceeds its capacity."""
    nodes = [node(f"n{i}", 8, 32, 4 if i % 2 else 0) for i in range(6)]
    pending = [job(f"j{i}").cpu(1 + i % 5).gpus(i % 3).replicas(1 + i % 3).seq(i)
               for i in range(40)]
    d = schedule(snapshot(nodes=nodes, groups=[ROOMY], pending=pending))
    assert d.admissions
    by_id = {p.id: p for p in snapshot(nodes=nodes, groups=[ROOMY], pending=pending).pending}
    load: dict[str, list[float]] = {}
    for a in d.admissions:
        w = by_id[a.workload_id]
        for role in w.roles:
            assert len(a.placement[role.name]) == role.replicas
            for n in a.placement[role.name]:
                u = load.setdefault(n, [0.0, 0.0, 0.0])
                u[0] += role.resources.cpu
                u[1] += role.resources.memory
                u[2] += role.resources.gpu
    caps = {n.name: n.capacity for n in nodes}
    for n, (c, m, g) in load.items():
        assert c <= caps[n].cpu and m <= caps[n].memory and g <= caps[n].gpu
