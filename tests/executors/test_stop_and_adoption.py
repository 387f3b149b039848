"""Stopping (SIGTERM, escalation to SIGKILL) and re-adoption after the server is gone.

Child programs are tiny Python scripts; those that ignore SIGTERM prove that the
SIGKILL escalation happens. Every wait is on an event (a log line, an exit code)
with a generous deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from _executor_helpers import DEADLINE_S, py, wait_for

from plinth.executors.base import EXIT_LOST
from plinth.executors.local import LocalExecutor
from plinth.executors.supervisor import proc_start_time

IGNORE_TERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)
SLEEP_READY = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"


def _await_ready(executor: LocalExecutor, handle: dict) -> None:
    wait_for(lambda: b"ready" in executor.read_log(handle, 0, 4096), what="the replica to start")


def _alive(pid: int) -> bool:
    return proc_start_time(pid) is not None  # not a zombie either


def test_stop_sends_sigterm(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(py(SLEEP_READY)))
    _await_ready(executor, handle)
    executor.stop(handle, grace_s=DEADLINE_S)
    assert executor.wait(handle, DEADLINE_S) == -signal.SIGTERM
    assert executor.exit_reason(handle) == "stopped"


def test_stop_escalates_to_sigkill_after_grace(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(py(IGNORE_TERM)))
    _await_ready(executor, handle)
    executor.stop(handle, grace_s=0.2)
    assert executor.wait(handle, DEADLINE_S) == -signal.SIGKILL
    log = executor.read_log(handle, 0, 1 << 16)
    assert b"SIGKILL to process group" in log


def test_stop_is_non_blocking(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(py(IGNORE_TERM)))
    _await_ready(executor, handle)
    executor.stop(handle, grace_s=600)
    # It returned while the replica still runs: the grace has not passed.
    assert executor.poll(handle) is None
    # A second stop may shorten the grace (and is otherwise harmless).
    executor.stop(handle, grace_s=0)
    assert executor.wait(handle, DEADLINE_S) == -signal.SIGKILL


def test_stop_is_idempotent_and_a_no_op_after_the_end(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(py(SLEEP_READY)))
    _await_ready(executor, handle)
    executor.stop(handle, grace_s=DEADLINE_S)
    executor.stop(handle, grace_s=DEADLINE_S)
    assert executor.wait(handle, DEADLINE_S) == -signal.SIGTERM
    executor.stop(handle, grace_s=0)
    assert executor.poll(handle) == -signal.SIGTERM


def test_stop_right_after_launch_is_not_lost(executor: LocalExecutor, make_spec) -> None:
    # The supervisor may not have installed its signal handlers yet: it must
    # still see the request (the `stop` file) and stop the command.
    handle = executor.launch(make_spec(py(SLEEP_READY)))
    executor.stop(handle, grace_s=DEADLINE_S)
    code = executor.wait(handle, DEADLINE_S)
    assert code == -signal.SIGTERM
    assert executor.exit_reason(handle) == "stopped"


def test_stop_kills_the_whole_process_group(executor: LocalExecutor, make_spec) -> None:
    # The command starts a grandchild (same process group) that ignores SIGTERM.
    code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {IGNORE_TERM!r}])
        print("grandchild", child.pid, flush=True)
        time.sleep(600)
        """
    )
    handle = executor.launch(make_spec(py(code)))
    # Both lines: the grandchild's "ready" says it ignores SIGTERM now.
    wait_for(lambda: {b"grandchild", b"ready"} <= set(executor.read_log(handle, 0, 4096).split()))
    grandchild = int(executor.read_log(handle, 0, 4096).split(b"grandchild ")[1].split()[0])
    assert _alive(grandchild)
    executor.stop(handle, grace_s=0.2)
    assert executor.wait(handle, DEADLINE_S) == -signal.SIGTERM
    # The exit code is recorded only once the group is gone.
    assert not _alive(grandchild)


def test_leftovers_of_an_ended_command_are_stopped(executor: LocalExecutor, make_spec) -> None:
    # The command exits at once, leaving a background process in its group.
    code = textwrap.dedent(
        f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", {SLEEP_READY!r}])
        print("left", child.pid, flush=True)
        """
    )
    handle = executor.launch(make_spec(py(code), grace_s=0.2))
    assert executor.wait(handle, DEADLINE_S) == 0
    leftover = int(executor.read_log(handle, 0, 4096).split(b"left ")[1].split()[0])
    assert not _alive(leftover)


def test_timeout_stops_the_replica_by_itself(executor: LocalExecutor, make_spec) -> None:
    handle = executor.launch(make_spec(py(IGNORE_TERM), timeout_s=0.2, grace_s=0.1))
    # SIGKILL once it ignores SIGTERM; SIGTERM if the timeout came first (slow start).
    assert executor.wait(handle, DEADLINE_S) in (-signal.SIGKILL, -signal.SIGTERM)
    assert executor.exit_reason(handle) == "timeout"


# -- the server goes away ----------------------------------------------------------

LAUNCHER = """
import json, os, sys, time
from pathlib import Path
from plinth.executors.base import ReplicaLaunch
from plinth.executors.local import LocalExecutor
state, work, log, command, action = sys.argv[1:6]
ex = LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": "1Gi"}], state_dir=state)
handle = ex.launch(ReplicaLaunch("w9", "main", 0, 0, json.loads(command), {}, Path(work),
                                 Path(log), "n1"))
if action == "stop":
    while b"ready" not in ex.read_log(handle, 0, 100):
        time.sleep(0.005)
    ex.stop(handle, 0.2)
print(json.dumps(handle), flush=True)
if action == "hang":
    sys.stdin.read()  # until killed
os._exit(0)  # no clean-up of any kind
"""


def _launch_elsewhere(tmp_path: Path, command: list[str], action: str) -> subprocess.Popen:
    """A separate 'server' process that launches one replica and prints its handle."""
    (tmp_path / "work").mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path / "state"), str(tmp_path / "work"),
         str(tmp_path / "replica.log"), json.dumps(command), action],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _fresh_executor(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(nodes=[{"name": "n1", "cpu": 1, "memory": "1Gi"}], state_dir=tmp_path)


def test_replica_survives_a_kill_9_of_the_server_and_is_re_adopted(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    code = (
        "import os, time\nprint('ready', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}):\n    time.sleep(0.01)\n"
        "print('done', flush=True)\nraise SystemExit(7)\n"
    )
    server = _launch_elsewhere(tmp_path, py(code), "hang")
    handle = json.loads(server.stdout.readline())
    server.kill()  # SIGKILL: the launching process dies without any clean-up
    server.wait(DEADLINE_S)
    server.stdout.close()
    server.stdin.close()

    fresh = _fresh_executor(tmp_path)
    _await_ready(fresh, handle)
    assert fresh.poll(handle) is None  # still running, under its supervisor
    flag.touch()
    assert fresh.wait(handle, DEADLINE_S) == 7
    assert fresh.read_log(handle, 0, 100) == b"ready\ndone\n"


def test_escalation_happens_even_if_the_server_dies_after_stop(tmp_path: Path) -> None:
    server = _launch_elsewhere(tmp_path, py(IGNORE_TERM), "stop")
    handle = json.loads(server.stdout.readline())
    assert server.wait(DEADLINE_S) == 0  # the 'server' is gone right after stop()
    server.stdout.close()
    server.stdin.close()
    assert _fresh_executor(tmp_path).wait(handle, DEADLINE_S) == -signal.SIGKILL


def test_killed_supervisor_with_a_running_command_is_stoppable_and_ends_lost(
    executor: LocalExecutor, make_spec
) -> None:
    handle = executor.launch(make_spec(py(IGNORE_TERM)))
    _await_ready(executor, handle)
    child = executor.replica_pid(handle)
    os.kill(handle["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not _alive_or_reap(executor, handle), what="the supervisor to die")
    assert executor.poll(handle) is None  # the command still runs, orphaned
    executor.stop(handle, grace_s=0.2)  # a detached killer escalates to SIGKILL
    assert executor.wait(handle, DEADLINE_S) == EXIT_LOST
    assert executor.exit_reason(handle) == "lost"
    assert not _alive(child)


def test_killed_supervisor_and_command_end_lost_not_running_forever(
    executor: LocalExecutor, make_spec
) -> None:
    handle = executor.launch(make_spec(py(SLEEP_READY)))
    _await_ready(executor, handle)
    os.kill(handle["supervisor_pid"], signal.SIGKILL)
    os.kill(executor.replica_pid(handle), signal.SIGKILL)
    assert executor.wait(handle, DEADLINE_S) == EXIT_LOST
    assert LocalExecutor().poll(handle) == EXIT_LOST  # recorded: any instance agrees


def _alive_or_reap(executor: LocalExecutor, handle: dict) -> bool:
    return executor._supervisor_alive(handle)


def test_pid_reuse_is_not_mistaken_for_the_supervisor(tmp_path: Path) -> None:
    # A status dir whose supervisor "pid" now belongs to another process (this
    # test's), started at another time: the replica must be reported lost.
    status = tmp_path / "status"
    status.mkdir()
    me, my_start = os.getpid(), proc_start_time(os.getpid())
    ex = _fresh_executor(tmp_path)
    handle = {"status_dir": str(status), "log_path": str(tmp_path / "x.log"),
              "supervisor_pid": me}  # fmt: skip
    (status / "supervisor").write_text(f"{me} {my_start}\n")
    assert ex.poll(handle) is None  # same pid and start time: genuinely alive
    (status / "supervisor").write_text(f"{me} {my_start - 1}\n")  # started earlier: reused
    (status / "pid").write_text(f"{me} {my_start - 1}\n")  # the command's pid reused too
    assert ex.poll(handle) == EXIT_LOST
    ex.stop(handle, 0)  # ended: nothing is signalled (we are still alive to assert it)
