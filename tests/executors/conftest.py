"""Fixtures for executor tests: real supervised subprocesses, in tmp_path. The real
multi-node Ray cluster (``ray_cluster``) is tests/_ray_cluster.py's, shared by every
folder through tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from plinth.executors.base import ReplicaLaunch
from plinth.executors.local import LocalExecutor


@pytest.fixture
def executor(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(
        nodes=[{"name": "n1", "cpu": 4, "memory": "8Gi", "gpu": 2}],
        state_dir=tmp_path / "state",
    )


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., ReplicaLaunch]:
    counter = iter(range(10_000))
    workdir = tmp_path / "work"
    workdir.mkdir()

    def make(command: list[str], **kw: object) -> ReplicaLaunch:
        n = next(counter)
        fields: dict[str, object] = {
            "workload_id": "w1",
            "role": "main",
            "replica": 0,
            "attempt": n,
            "command": command,
            "env": {"PLINTH_WORKLOAD_ID": "w1"},
            "workdir": workdir,
            "log_path": tmp_path / "logs" / f"main-0.attempt-{n}.log",
            "node": "n1",
        }
        fields.update(kw)
        return ReplicaLaunch(**fields)  # type: ignore[arg-type]

    return make
