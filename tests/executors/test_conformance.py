"""The executor conformance suite: what every backend must do, run against each.

``local``: supervised subprocesses of this machine. ``ray``: the same replicas under
per-node agents of a real 2-node Ray cluster on loopback (the session's
``ray_cluster``; its nodes ``head`` and ``w1``), each replica placed on ``w1`` -- not
the node the test process is connected to. Every wait is on an event with a deadline.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _executor_helpers import DEADLINE_S, py, wait_for

from plinth.executors.base import Executor, ReplicaLaunch
from plinth.executors.local import LocalExecutor

IGNORE_TERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)
SLEEP_READY = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"


@dataclass
class Backend:
    executor: Executor
    node: str  # where the suite's replicas go
    gpus: int  # that node's GPUs
    fresh: Callable[[], Executor]  # a new instance, as after a server restart
    make_spec: Callable[..., ReplicaLaunch]


def _spec_factory(tmp_path: Path, node: str) -> Callable[..., ReplicaLaunch]:
    counter = iter(range(10_000))
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)

    def make(command: list[str], **kw: object) -> ReplicaLaunch:
        n = next(counter)
        fields: dict[str, object] = {
            "workload_id": f"w-{tmp_path.name}", "role": "main", "replica": 0, "attempt": n,
            "command": command, "env": {"PLINTH_WORKLOAD_ID": "w1"}, "workdir": workdir,
            "log_path": tmp_path / "logs" / f"main-0.attempt-{n}.log", "node": node,
        }  # fmt: skip
        fields.update(kw)
        return ReplicaLaunch(**fields)  # type: ignore[arg-type]

    return make


@pytest.fixture(params=["local", "ray"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        nodes = [{"name": "n1", "cpu": 4, "memory": "8Gi", "gpu": 2}]

        def fresh() -> Executor:
            return LocalExecutor(nodes=nodes, state_dir=tmp_path / "state")

        yield Backend(fresh(), "n1", 2, fresh, _spec_factory(tmp_path, "n1"))
        return
    cluster = request.getfixturevalue("ray_cluster")
    yield Backend(cluster.executor(), "w1", 1, cluster.executor, _spec_factory(tmp_path, "w1"))


def _await_ready(ex: Executor, handle: dict) -> None:
    wait_for(lambda: b"ready" in ex.read_log(handle, 0, 4096), what="the replica to start")


def test_exit_code_log_and_storable_handle(backend: Backend) -> None:
    ex = backend.executor
    handle = ex.launch(backend.make_spec(py("print('hello'); import sys; sys.exit(3)")))
    assert json.loads(json.dumps(handle)) == handle
    assert ex.wait(handle, DEADLINE_S) == 3
    assert ex.exit_reason(handle) == "exited"
    assert ex.read_log(handle, 0, 1 << 20) == b"hello\n"
    # The log is where the API reads it (the handle's log_path), complete at the end.
    assert ex.read_log(handle["log_path"], 0, 1 << 20) == b"hello\n"
    assert ex.poll(handle) == 3


def test_environment_cwd_and_gpus(backend: Backend, monkeypatch) -> None:
    monkeypatch.setenv("PLINTH_DATABASE_URL", "postgresql://u:secret@db/plinth")
    ex = backend.executor
    code = (
        "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
        "['PLINTH_WORKLOAD_ID', 'PLINTH_DATABASE_URL', 'CUDA_VISIBLE_DEVICES']}"
        " | {'cwd': os.getcwd()}))"
    )
    with_gpu = ex.launch(backend.make_spec(py(code), gpus=(0,)))
    without = ex.launch(backend.make_spec(py(code)))
    assert ex.wait(with_gpu, DEADLINE_S) == 0 and ex.wait(without, DEADLINE_S) == 0
    seen = json.loads(ex.read_log(with_gpu, 0, 1 << 20))
    assert seen["PLINTH_WORKLOAD_ID"] == "w1"
    assert seen["PLINTH_DATABASE_URL"] is None  # the server's secrets stay out
    assert seen["CUDA_VISIBLE_DEVICES"] == "0"
    assert Path(seen["cwd"]) == backend.make_spec(["x"]).workdir
    assert json.loads(ex.read_log(without, 0, 1 << 20))["CUDA_VISIBLE_DEVICES"] == ""


def test_command_not_found_is_127(backend: Backend) -> None:
    ex = backend.executor
    handle = ex.launch(backend.make_spec(["plinth-no-such-program-xyz"]))
    assert ex.wait(handle, DEADLINE_S) == 127
    assert b"cannot execute 'plinth-no-such-program-xyz'" in ex.read_log(handle, 0, 4096)


def test_launch_refuses_bad_specs_clearly(backend: Backend, tmp_path: Path) -> None:
    ex, make = backend.executor, backend.make_spec
    with pytest.raises(ValueError, match="unknown node 'elsewhere'"):
        ex.launch(make(["true"], node="elsewhere"))
    with pytest.raises(ValueError, match="command is empty"):
        ex.launch(make([]))
    with pytest.raises(ValueError, match=r"do not fit node .* GPU"):
        ex.launch(make(["true"], gpus=tuple(range(backend.gpus + 1))))
    with pytest.raises(ValueError, match="working directory .* does not exist"):
        ex.launch(make(["true"], workdir=tmp_path / "missing"))


def test_stop_sends_sigterm_then_sigkill_after_grace(backend: Backend) -> None:
    ex = backend.executor
    polite = ex.launch(backend.make_spec(py(SLEEP_READY)))
    stubborn = ex.launch(backend.make_spec(py(IGNORE_TERM)))
    _await_ready(ex, polite)
    _await_ready(ex, stubborn)
    ex.stop(polite, grace_s=DEADLINE_S)
    ex.stop(stubborn, grace_s=0.2)
    assert ex.wait(polite, DEADLINE_S) == -signal.SIGTERM
    assert ex.exit_reason(polite) == "stopped"
    assert ex.wait(stubborn, DEADLINE_S) == -signal.SIGKILL
    ex.stop(polite, grace_s=0)  # a no-op after the end
    assert ex.poll(polite) == -signal.SIGTERM


def test_stop_is_non_blocking(backend: Backend) -> None:
    ex = backend.executor
    handle = ex.launch(backend.make_spec(py(IGNORE_TERM)))
    _await_ready(ex, handle)
    ex.stop(handle, grace_s=600)
    assert ex.poll(handle) is None  # returned while the grace runs
    ex.stop(handle, grace_s=0)
    assert ex.wait(handle, DEADLINE_S) == -signal.SIGKILL


def test_read_log_offsets(backend: Backend, tmp_path: Path) -> None:
    ex = backend.executor
    handle = ex.launch(backend.make_spec(py("print('0123456789', end='')")))
    assert ex.wait(handle, DEADLINE_S) == 0
    assert ex.read_log(handle, 2, 3) == b"234"
    assert ex.read_log(handle, -4, 100) == b"6789"
    assert ex.read_log(handle, 50, 10) == b""
    assert ex.read_log(tmp_path / "never-written.log", 0, 10) == b""
    with pytest.raises(ValueError, match="limit"):
        ex.read_log(handle, 0, -1)


def test_logs_stream_while_the_replica_runs(backend: Backend) -> None:
    ex = backend.executor
    code = "import time\nprint('first', flush=True)\ntime.sleep(600)\n"
    handle = ex.launch(backend.make_spec(py(code)))
    try:
        # Through the file the API reads, with the executor polling as the loop does.
        wait_for(
            lambda: (
                ex.poll(handle) is None
                and Path(handle["log_path"]).exists()
                and Path(handle["log_path"]).read_bytes() == b"first\n"
            ),
            what="the first line to reach the server's log file",
        )
    finally:
        ex.stop(handle, 0)
        assert ex.wait(handle, DEADLINE_S) == -signal.SIGTERM


def test_inventory_and_ports(backend: Backend) -> None:
    ex = backend.executor
    node = next(n for n in ex.inventory() if n.name == backend.node)
    assert node.cpu > 0 and node.memory_mib > 0 and node.gpu == backend.gpus
    ports = [ex.allocate_port(backend.node) for _ in range(10)]
    assert len(set(ports)) == 10
    with socket.socket() as s:
        s.bind((node.address, ports[0]))
    with pytest.raises(ValueError, match="unknown node"):
        ex.allocate_port("nowhere")


def test_a_fresh_executor_re_attaches(backend: Backend) -> None:
    """After a server restart: a new instance, given only the stored handle, polls,
    reads and stops the replica an earlier instance started."""
    handle = backend.executor.launch(backend.make_spec(py(SLEEP_READY)))
    _await_ready(backend.executor, handle)
    again = backend.fresh()
    assert again.poll(handle) is None
    assert b"ready" in again.read_log(handle, 0, 100)
    again.stop(handle, grace_s=DEADLINE_S)
    assert again.wait(handle, DEADLINE_S) == -signal.SIGTERM
