"""The local executor with real supervised subprocesses: launch, logs, env, exit codes."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from _executor_helpers import DEADLINE_S, py, wait_for

from plinth.executors.base import NodeCapacity
from plinth.executors.local import LocalExecutor, machine_capacity, parse_memory_mib


def test_exit_code_log_and_handle(executor: LocalExecutor, make_spec) -> None:
    spec = make_spec(py("print('hello'); import sys; sys.exit(3)"))
    handle = executor.launch(spec)
    assert json.loads(json.dumps(handle)) == handle  # storable as is
    assert executor.wait(handle, DEADLINE_S) == 3
    assert executor.exit_reason(handle) == "exited"
    assert executor.read_log(handle, 0, 1 << 20) == b"hello\n"
    assert executor.poll(handle) == 3  # stable


def test_stdout_and_stderr_share_one_file_in_order(executor: LocalExecutor, make_spec) -> None:
    code = "import sys\nfor i in range(50):\n    (sys.stdout if i % 2 else sys.stderr).write(f'{i}\\n')"
    handle = executor.launch(make_spec(py(code)))
    assert executor.wait(handle, DEADLINE_S) == 0
    lines = executor.read_log(handle, 0, 1 << 20).decode().split()
    assert lines == [str(i) for i in range(50)]


def test_environment_cwd_and_gpus(executor: LocalExecutor, make_spec, monkeypatch) -> None:
    # The server's own secrets stay out; locale and numeric-library knobs come along.
    monkeypatch.setenv("PLINTH_DATABASE_URL", "postgresql://u:secret@db/plinth")
    monkeypatch.setenv("LC_PLINTH_TEST", "yes")
    code = (
        "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
        "['PLINTH_WORKLOAD_ID', 'PLINTH_DATABASE_URL', 'LC_PLINTH_TEST', "
        "'CUDA_VISIBLE_DEVICES', 'PATH']}"
        " | {'cwd': os.getcwd()}))"
    )
    with_gpus = executor.launch(make_spec(py(code), gpus=(0, 1)))
    without = executor.launch(make_spec(py(code)))
    assert executor.wait(with_gpus, DEADLINE_S) == 0
    assert executor.wait(without, DEADLINE_S) == 0
    seen = json.loads(executor.read_log(with_gpus, 0, 1 << 20))
    assert seen["PLINTH_WORKLOAD_ID"] == "w1"
    assert seen["PLINTH_DATABASE_URL"] is None
    assert seen["LC_PLINTH_TEST"] == "yes"
    assert seen["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert seen["PATH"] == os.environ["PATH"]
    assert Path(seen["cwd"]) == make_spec(["x"]).workdir
    assert json.loads(executor.read_log(without, 0, 1 << 20))["CUDA_VISIBLE_DEVICES"] == ""


def test_replica_runs_in_its_own_process_group_and_session(
    executor: LocalExecutor, make_spec
) -> None:
    code = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    handle = executor.launch(make_spec(py(code)))
    assert executor.wait(handle, DEADLINE_S) == 0
    pid, pgid, sid = map(int, executor.read_log(handle, 0, 100).split())
    assert pgid == pid == executor.replica_pid(handle)
    assert sid != os.getsid(0)  # not the server's session: a terminal's signals miss it
    assert pgid != os.getpgid(0)


def test_command_not_found_is_127_with_a_message(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(["plinth-no-such-program-xyz"]))
    assert executor.wait(handle, DEADLINE_S) == 127
    assert executor.exit_reason(handle) == "exec-failed"
    assert b"cannot execute 'plinth-no-such-program-xyz'" in executor.read_log(handle, 0, 4096)


def test_command_not_executable_is_126(executor: LocalExecutor, make_spec, tmp_path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    handle = executor.launch(make_spec([str(script)]))
    assert executor.wait(handle, DEADLINE_S) == 126


def test_every_attempt_has_its_own_log(executor: LocalExecutor, make_spec) -> None:
    first = executor.launch(make_spec(py("print('one')")))
    second = executor.launch(make_spec(py("print('two')")))
    assert executor.wait(first, DEADLINE_S) == 0 and executor.wait(second, DEADLINE_S) == 0
    assert executor.read_log(first, 0, 100) == b"one\n"
    assert executor.read_log(second["log_path"], 0, 100) == b"two\n"
    assert first["status_dir"] != second["status_dir"]


def test_launch_refuses_bad_specs_clearly(executor: LocalExecutor, make_spec, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown node 'elsewhere'; this executor has: n1"):
        executor.launch(make_spec(["true"], node="elsewhere"))
    with pytest.raises(ValueError, match="command is empty"):
        executor.launch(make_spec([]))
    with pytest.raises(ValueError, match=r"GPUs \[0, 1, 2\] do not fit node 'n1'.* has 2 GPU"):
        executor.launch(make_spec(["true"], gpus=(0, 1, 2)))
    with pytest.raises(ValueError, match="distinct indices"):
        executor.launch(make_spec(["true"], gpus=(1, 1)))
    with pytest.raises(ValueError, match="working directory .* does not exist"):
        executor.launch(make_spec(["true"], workdir=tmp_path / "missing"))


# -- logs ------------------------------------------------------------------------


def test_read_log_offsets(executor: LocalExecutor, make_spec, tmp_path) -> None:
    handle = executor.launch(make_spec(py("print('0123456789', end='')")))
    assert executor.wait(handle, DEADLINE_S) == 0
    assert executor.read_log(handle, 2, 3) == b"234"
    assert executor.read_log(handle, -4, 100) == b"6789"
    assert executor.read_log(handle, -100, 2) == b"01"
    assert executor.read_log(handle, 50, 10) == b""
    assert executor.read_log(tmp_path / "never-written.log", 0, 10) == b""
    with pytest.raises(ValueError, match="limit"):
        executor.read_log(handle, 0, -1)


# -- inventory and ports ---------------------------------------------------------


def test_inventory_defaults_to_this_machine() -> None:
    (node,) = LocalExecutor().inventory()
    assert node == machine_capacity()
    assert node.name == "local"
    assert node.cpu == float(os.cpu_count())
    with open("/proc/meminfo") as f:
        total_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    assert node.memory_mib == total_kib // 1024
    assert node.gpu == 0


def test_inventory_from_configuration() -> None:
    ex = LocalExecutor(
        nodes=[
            {"name": "a", "cpu": 8, "memory": "32Gi", "gpu": 4},
            {"name": "b", "cpu": 0.5, "memory": "512Mi"},
            NodeCapacity("c", 1.0, 100, 0, address="10.0.0.3"),
        ]
    )
    assert ex.inventory() == [
        NodeCapacity("a", 8.0, 32768, 4),
        NodeCapacity("b", 0.5, 512, 0),
        NodeCapacity("c", 1.0, 100, 0, address="10.0.0.3"),
    ]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([{"name": "a", "cpu": 1, "memory": "lots"}], "node 'a': memory 'lots' is not understood"),
        ([{"cpu": 1}], "non-empty string `name`"),
        ([{"name": "a", "cpus": 1}], "unknown field.*cpus"),
        ([{"name": "a", "cpu": -1}], "must not be negative"),
        ([{"name": "a"}, {"name": "a"}], "unique"),
    ],
)
def test_bad_node_configuration_says_what_to_fix(nodes: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalExecutor(nodes=nodes)


@pytest.mark.parametrize(
    ("text", "mib"),
    # The same parser as job specs and the configuration: a bare number is MiB, string or
    # not, and a part of a MiB rounds up (2G = 1907.3 MiB).
    [("512Mi", 512), ("4Gi", 4096), ("1Ti", 1 << 20), ("1024", 1024), ("2G", 1908), (64, 64)],
)
def test_parse_memory_mib(text: str | int, mib: int) -> None:
    assert parse_memory_mib(text) == mib
    node = LocalExecutor(nodes=[{"name": "a", "cpu": 1, "memory": text}]).inventory()[0]
    assert node.memory_mib == mib


def test_allocate_port_gives_distinct_bindable_ports(executor: LocalExecutor) -> None:
    ports = [executor.allocate_port("n1") for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    with pytest.raises(ValueError, match="unknown node"):
        executor.allocate_port("nowhere")


def test_supervisor_runs_as_a_module(tmp_path: Path) -> None:
    import subprocess

    status = tmp_path / "status"
    status.mkdir()
    log = tmp_path / "out.log"
    done = subprocess.run(
        [sys.executable, "-m", "plinth.executors.supervisor", "--status-dir", str(status),
         "--log", str(log), "--", sys.executable, "-c", "print('via -m')"],
        check=False, timeout=DEADLINE_S,
    )  # fmt: skip
    assert done.returncode == 0
    assert (status / "exit_code").read_text().strip() == "0"
    assert log.read_bytes() == b"via -m\n"
    pid, start = (status / "pid").read_text().split()
    assert int(pid) > 0 and int(start) > 0
    usage = subprocess.run(
        [sys.executable, "-m", "plinth.executors.supervisor"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2 and "required" in usage.stderr


def test_wait_returns_none_on_timeout(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(py("import time; time.sleep(60)")))
    try:
        assert executor.wait(handle, 0.05) is None
    finally:
        executor.stop(handle, 0)
        wait_for(lambda: executor.poll(handle) is not None, what="the replica to stop")


def test_relaunching_the_same_attempt_gets_a_fresh_status_dir(
    executor: LocalExecutor, make_spec
) -> None:
    spec = make_spec(py("print('again')"))
    first = executor.launch(spec)
    second = executor.launch(spec)  # e.g. the server crashed between launch and record
    assert first["status_dir"] != second["status_dir"]
    assert executor.wait(first, DEADLINE_S) == 0 and executor.wait(second, DEADLINE_S) == 0


def test_status_dir_defaults_to_beside_the_log(make_spec, tmp_path: Path) -> None:
    ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": 64}])
    handle = ex.launch(make_spec(["true"]))
    assert Path(handle["status_dir"]).parent == tmp_path / "logs" / ".status"
    assert ex.wait(handle, DEADLINE_S) == 0


def test_relative_paths_are_taken_from_the_server_not_the_workdir(
    make_spec, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": 64}], state_dir="state")
    script = make_spec(["x"]).workdir / "run.sh"
    script.write_text("#!/bin/sh\necho from-workdir\n")
    script.chmod(0o755)
    handle = ex.launch(make_spec(["./run.sh"], log_path=Path("rel.log")))  # ./ is the workdir
    assert ex.wait(handle, DEADLINE_S) == 0
    assert (tmp_path / "rel.log").read_bytes() == b"from-workdir\n"
    assert Path(handle["status_dir"]).is_relative_to(tmp_path / "state")


def test_an_unwritable_log_ends_the_replica_with_a_reason(make_spec, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": 64}], state_dir=tmp_path / "s")
    handle = ex.launch(make_spec(["true"], log_path=tmp_path / "a-file" / "x.log"))
    assert ex.wait(handle, DEADLINE_S) == 126
    assert ex.exit_reason(handle) == "supervisor-error"


def test_replicas_run_at_the_configured_niceness(make_spec, tmp_path: Path) -> None:
    """``nice``: the supervisor lowers its own priority and the command inherits it."""
    ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": 64}], nice=7)
    handle = ex.launch(make_spec(py("import os; print(os.nice(0))")))
    assert ex.wait(handle, DEADLINE_S) == 0
    expected = min(os.nice(0) + 7, 19)  # relative to this (the server's) niceness
    assert ex.read_log(handle, 0, 1 << 20) == f"{expected}\n".encode()


def test_default_niceness_is_the_servers(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(py("import os; print(os.nice(0))")))
    assert executor.wait(handle, DEADLINE_S) == 0
    assert executor.read_log(handle, 0, 1 << 20) == f"{os.nice(0)}\n".encode()


@pytest.mark.parametrize("nice", [-1, 20])
def test_niceness_out_of_range_is_refused(nice: int) -> None:
    with pytest.raises(ValueError, match="nice must be an increment from 0 to 19"):
        LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": 64}], nice=nice)
