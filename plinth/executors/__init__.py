"""Executors: launch, observe and stop the replicas of workloads.

``get_executor("local")`` gives the default backend (supervised local
subprocesses); see :mod:`plinth.executors.base` for the contract and
docs/executors.md for the design.
"""

from plinth.executors.base import (
    EXIT_LOST,
    Executor,
    NodeCapacity,
    ReplicaLaunch,
    describe_exit,
    get_executor,
    register_executor,
    registered_executors,
)

__all__ = [
    "EXIT_LOST",
    "Executor",
    "NodeCapacity",
    "ReplicaLaunch",
    "describe_exit",
    "get_executor",
    "register_executor",
    "registered_executors",
]
