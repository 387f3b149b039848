"""Submit-time feasibility (``services.admission.unplaceable_reason``): a gang that could
never start on the configured nodes, even empty, is named with the capacity."""

from __future__ import annotations

from plinth.scheduler import SchedulerConfig
from plinth.services.admission import NodeFree, ReplicaDemand, unplaceable_reason


def node(name: str, cpu: float = 4, memory: int = 8192, gpus: int = 0) -> NodeFree:
    return NodeFree(name, "127.0.0.1", cpu, memory, tuple(range(gpus)))


def test_unplaceable_names_the_replica_and_capacity() -> None:
    why = unplaceable_reason((node("a", gpus=0),), (ReplicaDemand("worker", 1, 1, 1, 2),))
    assert why is not None and "worker-1" in why and "gpu=2" in why and "a cpu=4" in why
    assert unplaceable_reason((node("a"),), (ReplicaDemand("w", 0, 4, 8192, 0),)) is None


def test_the_whole_gang_must_fit_together() -> None:
    # each replica fits a node alone, but the gang needs more than both nodes have
    gang = tuple(ReplicaDemand("w", i, 3, 100, 0) for i in range(3))
    why = unplaceable_reason((node("a"), node("b")), gang)
    assert why is not None and "w-2" in why and "even on empty nodes" in why
    assert unplaceable_reason((node("a"), node("b")), gang[:2]) is None


def test_gpus_are_counted_per_node() -> None:
    gang = (ReplicaDemand("w", 0, 1, 100, 2), ReplicaDemand("w", 1, 1, 100, 2))
    assert unplaceable_reason((node("a", gpus=2), node("b", gpus=2)), gang) is None
    assert unplaceable_reason((node("a", gpus=3),), gang) is not None


def test_the_schedulers_placement_rules_count_at_submit() -> None:
    # A CPU-only node too small for the replica, and a GPU node whose CPU its GPU needs:
    # the scheduler would never place the replica there, so the job must be refused.
    nodes = (NodeFree("c", "h", 2, 4096, ()), NodeFree("g", "h", 16, 65536, (0,)))
    cpu_job = (ReplicaDemand("main", 0, 8, 1024, 0),)
    assert unplaceable_reason(nodes, cpu_job) is None  # capacity alone would allow it
    why = unplaceable_reason(nodes, cpu_job, SchedulerConfig())
    assert why is not None and "cpu_work_on_gpu_nodes" in why
    allowed = SchedulerConfig(cpu_work_on_gpu_nodes=True)
    assert unplaceable_reason(nodes, cpu_job, allowed) is None
    # A GPU replica is placed there as usual.
    assert (
        unplaceable_reason(nodes, (ReplicaDemand("main", 0, 8, 1024, 1),), SchedulerConfig())
        is None
    )


def test_a_gang_the_scheduler_can_place_is_not_refused_for_a_heuristics_miss() -> None:
    # First-fit in the given order works here, largest-first would not ...
    cpu_nodes = (NodeFree("n1", "h", 4, 100, ()), NodeFree("n2", "h", 6, 10, ()))
    gang = (ReplicaDemand("b", 0, 3, 60, 0), ReplicaDemand("a", 0, 4, 5, 0))
    assert unplaceable_reason(cpu_nodes, gang, SchedulerConfig()) is None
    # ... and largest-first works here, where the given order would not.
    gpu_nodes = (node("a", gpus=2), node("b", gpus=1))
    gang = (ReplicaDemand("x", 0, 1, 1, 1), ReplicaDemand("y", 0, 1, 1, 2))
    assert unplaceable_reason(gpu_nodes, gang, SchedulerConfig()) is None
