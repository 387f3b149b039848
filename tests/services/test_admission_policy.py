"""The simple admission policy: gangs, first-fit, GPUs, queue order, reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from plinth.services.admission import (
    NodeFree,
    PendingWorkload,
    ReplicaDemand,
    Snapshot,
    decide,
    unplaceable_reason,
)


def node(name: str, cpu: float = 4, memory: int = 8192, gpus: int = 0) -> NodeFree:
    return NodeFree(name, "127.0.0.1", cpu, memory, tuple(range(gpus)))


def job(wid: str, *reps: tuple[str, int, float, int, int]) -> PendingWorkload:
    return PendingWorkload(wid, tuple(ReplicaDemand(*r) for r in reps))


@dataclass
class Case:
    name: str
    nodes: list[NodeFree]
    pending: list[PendingWorkload]
    want_admitted: list[str]
    want_nodes: dict[str, list[str]] = field(default_factory=dict)
    want_gpus: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    want_waiting: list[str] = field(default_factory=list)


CASES = [
    Case("fits", [node("a")], [job("j1", ("w", 0, 1, 100, 0))], ["j1"], {"j1": ["a"]}),
    Case(
        "gang is all or nothing",
        [node("a", cpu=2)],
        [job("j1", ("w", 0, 1, 100, 0), ("w", 1, 1, 100, 0), ("w", 2, 1, 100, 0))],
        [], want_waiting=["j1"],
    ),
    Case(
        "first fit spills to the next node",
        [node("a", cpu=1), node("b", cpu=1)],
        [job("j1", ("w", 0, 1, 100, 0), ("w", 1, 1, 100, 0))],
        ["j1"], {"j1": ["a", "b"]},
    ),
    Case(
        "queue order, later small jobs may pass a blocked big one",
        [node("a", cpu=2)],
        [job("big", ("w", 0, 3, 1, 0)), job("s1", ("w", 0, 1, 1, 0)), job("s2", ("w", 0, 1, 1, 0)),
         job("s3", ("w", 0, 1, 1, 0))],
        ["s1", "s2"], want_waiting=["big", "s3"],
    ),
    Case(
        "gpus are handed out by index",
        [node("a", gpus=3)],
        [job("j1", ("w", 0, 1, 1, 2)), job("j2", ("w", 0, 1, 1, 1)), job("j3", ("w", 0, 1, 1, 1))],
        ["j1", "j2"], want_gpus={"j1": [(0, 1)], "j2": [(2,)]}, want_waiting=["j3"],
    ),
    Case(
        "memory counts",
        [node("a", memory=1000)],
        [job("j1", ("w", 0, 0.1, 600, 0)), job("j2", ("w", 0, 0.1, 600, 0))],
        ["j1"], want_waiting=["j2"],
    ),
    Case(
        "fractional cpu sums exactly",
        [node("a", cpu=0.3)],
        [job(f"j{i}", ("w", 0, 0.1, 1, 0)) for i in range(4)],
        ["j0", "j1", "j2"], want_waiting=["j3"],
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_decide(case: Case) -> None:
    d = decide(Snapshot(tuple(case.nodes), tuple(case.pending)))
    assert [a.workload_id for a in d.admissions] == case.want_admitted
    by_id = {a.workload_id: a for a in d.admissions}
    for wid, nodes in case.want_nodes.items():
        assert [p.node for p in by_id[wid].placements] == nodes
    for wid, gpus in case.want_gpus.items():
        assert [p.gpus for p in by_id[wid].placements] == gpus
    assert sorted(d.waiting) == sorted(case.want_waiting)
    for why in d.waiting.values():
        assert "waiting for capacity" in why and "free now" in why


def test_unplaceable_names_the_replica_and_capacity() -> None:
    why = unplaceable_reason((node("a", gpus=0),), (ReplicaDemand("worker", 1, 1, 1, 2),))
    assert why is not None and "worker-1" in why and "gpu=2" in why and "a cpu=4" in why
    assert unplaceable_reason((node("a"),), (ReplicaDemand("w", 0, 4, 8192, 0),)) is None
