"""The per-node agent of the Ray executor: one detached, named Ray actor per node.

The agent is a thin shell around a :class:`~plinth.executors.local.LocalExecutor` on
its node: replicas run as supervised subprocesses there exactly as under the local
executor (their own session, a log file, ``pid``/``exit_code`` in a status directory),
so they outlive the agent, and a new agent on the same node (same ``root``) handles
them like its own. The server talks to it only through Ray actor calls; it never
needs the node's file system.

Named ``plinth-agent-<node id>`` in the executor's namespace and ``detached``: a
restarted server finds the same agent by name and re-attaches to its replicas.

Fate-sharing with the node: each agent starts a *watchdog* (a tiny process in its
own session) that SIGKILLs the process group of every replica the agent started once
the agent's process is gone. An agent dies when its node leaves the Ray cluster (its
raylet ends), and the server then declares the node's replicas lost and retries the
job elsewhere: without the watchdog the old copies would keep running unseen.

Node-local layout under ``root`` (default ``$TMPDIR/plinth-ray/<node id>``)::

    root/state/<workload>/<role>-<replica>-<attempt>-<stamp>/   status directories
    root/logs/<workload>/<role>-<replica>.attempt-<attempt>.log  replicas' output
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from plinth.executors.base import NodeCapacity, ReplicaLaunch
from plinth.executors.local import LocalExecutor, _read_ident, _same_process

__all__ = ["NodeAgent", "agent_name", "default_root", "watchdog_main"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def agent_name(node_id: str) -> str:
    """The actor name of the agent of Ray node `node_id` (hex)."""
    return f"plinth-agent-{node_id}"


def default_root(node_id: str) -> str:
    """Where an agent keeps its replicas' logs and status directories by default."""
    return os.path.join(tempfile.gettempdir(), "plinth-ray", node_id[:16])


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip(".") or "_"


class NodeAgent:
    """Starts, watches and stops the replicas of one node (a Ray actor; see the module
    docstring). Every method takes and returns plain JSON-able values."""

    def __init__(self, node: dict[str, Any], root: str, nice: int = 0) -> None:
        self._node = NodeCapacity(**node)
        self._root = Path(root)
        (self._root / "state").mkdir(parents=True, exist_ok=True)
        (self._root / "logs").mkdir(parents=True, exist_ok=True)
        self._local = LocalExecutor(nodes=[self._node], state_dir=self._root / "state", nice=nice)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", "plinth.executors.ray_agent",
             str(os.getpid()), str(self._root / "state")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )  # fmt: skip

    def ping(self) -> dict[str, Any]:
        """Who and where the agent is (for tests and diagnostics)."""
        return {"pid": os.getpid(), "root": str(self._root), "node": self._node.name,
                "watchdog_pid": self._watchdog.pid}  # fmt: skip

    def log_path(self, workload_id: str, role: str, replica: int, attempt: int) -> str:
        return str(
            self._root / "logs" / _safe(workload_id)
            / f"{_safe(role)}-{replica}.attempt-{attempt}.log"
        )  # fmt: skip

    def launch(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start one replica attempt; `spec` is a ReplicaLaunch's fields (paths as
        strings, ``log_path`` ignored: the log goes under the agent's root). Returns
        the local executor's handle."""
        fields = dict(spec)
        fields["log_path"] = Path(
            self.log_path(spec["workload_id"], spec["role"], spec["replica"], spec["attempt"])
        )
        fields["workdir"] = Path(spec["workdir"])
        fields["gpus"] = tuple(spec.get("gpus") or ())
        fields["node"] = self._node.name
        fields.pop("resources", None)
        Path(fields["log_path"]).parent.mkdir(parents=True, exist_ok=True)
        return self._local.launch(ReplicaLaunch(**fields))

    def poll(self, handle: dict[str, Any]) -> int | None:
        return self._local.poll(handle)

    def poll_and_read(
        self, handle: dict[str, Any], offset: int, limit: int
    ) -> tuple[int | None, bytes]:
        """The exit code (None while running) and the log from `offset`, in one call.
        The code is read first: once it is known, the bytes are the whole rest of the
        log up to `limit`."""
        code = self._local.poll(handle)
        return code, self._local.read_log(handle, offset, limit)

    def exit_reason(self, handle: dict[str, Any]) -> str | None:
        return self._local.exit_reason(handle)

    def stop(self, handle: dict[str, Any], grace_s: float) -> None:
        self._local.stop(handle, grace_s)

    def read_log(self, handle: dict[str, Any], offset: int, limit: int) -> bytes:
        return self._local.read_log(handle, offset, limit)

    def allocate_port(self) -> int:
        return self._local.allocate_port(self._node.name)

    def find_launched(
        self, workload_id: str, role: str, replica: int, attempt: int
    ) -> list[dict[str, Any]]:
        return self._local.find_launched(
            workload_id, role, replica, attempt, self.log_path(workload_id, role, replica, attempt)
        )

    def replica_pid(self, handle: dict[str, Any]) -> int | None:
        return self._local.replica_pid(handle)

    def live_replicas(self, workload_id: str, attempt: int) -> int:
        """How many replicas of this attempt started here and have not ended (a status
        directory without ``exit_code`` whose supervisor is starting or alive). Reads
        only: unlike ``poll`` it never declares a replica lost."""
        base = self._root / "state" / _safe(workload_id)
        pattern = re.compile(rf".+-\d+-{int(attempt)}-[0-9a-f]+")
        live = 0
        try:
            dirs = [d for d in base.iterdir() if pattern.fullmatch(d.name)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        for d in dirs:
            if (d / "exit_code").exists():
                continue
            ident = _read_ident(d / "supervisor")
            if ident is None or _same_process(*ident):
                live += 1
        return live


# -- the watchdog ------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _kill_replicas(state_dir: Path) -> None:
    """SIGKILL the process group of every replica under `state_dir` that has not ended."""
    for pid_file in state_dir.glob("*/*/pid"):
        if (pid_file.parent / "exit_code").exists():
            continue
        try:
            pid = int(pid_file.read_text().split()[0])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def watchdog_main(argv: list[str]) -> int:
    """``python -m plinth.executors.ray_agent AGENT_PID STATE_DIR``: wait for the agent's
    process to end, then kill the replicas it started (fate-sharing with the node)."""
    agent_pid, state_dir = int(argv[0]), Path(argv[1])
    try:
        pidfd = os.pidfd_open(agent_pid)
    except OSError:
        pidfd = None
    if pidfd is not None:
        import select

        select.select([pidfd], [], [])  # readable once the process has ended
    else:  # no pidfd (old kernel): look now and then
        while _alive(agent_pid):
            time.sleep(0.5)
    _kill_replicas(state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(watchdog_main(sys.argv[1:]))
