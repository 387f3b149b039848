"""The Executor interface: class-creation checks, registry, exit-code words."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from plinth.executors import (
    EXIT_LOST,
    Executor,
    NodeCapacity,
    ReplicaLaunch,
    describe_exit,
    get_executor,
    register_executor,
    registered_executors,
)
from plinth.executors.local import LocalExecutor


class _Complete(Executor, abstract=True):
    """Implements everything; concrete test executors derive from it."""

    def inventory(self) -> list[NodeCapacity]:
        return [NodeCapacity("n", 1.0, 1024, 0)]

    def launch(self, spec: ReplicaLaunch) -> dict:
        return {}

    def poll(self, handle: dict) -> int | None:
        return 0

    def stop(self, handle: dict, grace_s: float) -> None:
        return None

    def read_log(self, handle_or_path: dict | str | Path, offset: int, limit: int) -> bytes:
        return b""

    def allocate_port(self, node: str) -> int:
        return 1


def test_subclass_missing_a_method_fails_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"must implement allocate_port, poll"):

        class Broken(Executor):
            name = "broken"

            def inventory(self) -> list[NodeCapacity]:
                return []

            def launch(self, spec: ReplicaLaunch) -> dict:
                return {}

            def stop(self, handle: dict, grace_s: float) -> None:
                return None

            def read_log(self, handle_or_path: object, offset: int, limit: int) -> bytes:
                return b""


def test_subclass_without_registry_name_fails() -> None:
    with pytest.raises(TypeError, match="class attribute `name`"):

        class Nameless(_Complete):
            pass


def test_abstract_intermediate_class_is_allowed_and_complete_subclass_works() -> None:
    class Fine(_Complete):
        name = "fine-test"

    assert Fine().poll({}) == 0


def test_exit_reason_is_declared_with_a_default_and_capacity_is_one_value() -> None:
    class Plain(_Complete):
        name = "plain-test"

    assert Plain().exit_reason({}) is None  # a backend that cannot tell says nothing
    assert "exit_reason" in vars(Executor) and "exit_reason" in vars(LocalExecutor)
    from plinth.scheduler.resources import Resources

    assert NodeCapacity("n", 1.5, 1024, 2).resources == Resources(1.5, 1024, 2)


def test_registry_gives_local_and_registered_backends() -> None:
    assert isinstance(get_executor("local"), LocalExecutor)

    @register_executor
    class Registered(_Complete):
        name = "registered-test"

    assert "registered-test" in registered_executors()
    assert isinstance(get_executor("registered-test"), Registered)


def test_registry_passes_config_to_the_backend() -> None:
    ex = get_executor("local", nodes=[{"name": "a", "cpu": 2, "memory": "1Gi", "gpu": 1}])
    assert ex.inventory() == [NodeCapacity("a", 2.0, 1024, 1)]


def test_unknown_executor_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown executor 'nope'; choose one of: .*local"):
        get_executor("nope")


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "exited with status 0"),
        (3, "exited with status 3"),
        (127, "command not found"),
        (-signal.SIGKILL, "killed by signal 9 (SIGKILL)"),
        (-signal.SIGTERM, "killed by signal 15 (SIGTERM)"),
        (EXIT_LOST, "lost: the replica's supervisor was killed"),
    ],
)
def test_describe_exit(code: int, words: str) -> None:
    assert words in describe_exit(code)


def test_exit_lost_is_neither_a_status_nor_a_signal() -> None:
    assert EXIT_LOST > 255
