"""The local executor: each replica a subprocess of this machine, under a supervisor.

``launch`` is one ``Popen`` of the supervisor (:mod:`plinth.executors.supervisor`)
in a new session; it returns as soon as the supervisor is exec'd. The supervisor
owns the log, starts the command in its own process group and records the
command's pid and exit code in a per-replica status directory. Everything else
here reads that directory and ``/proc``, so a fresh ``LocalExecutor`` (after a
server restart) handles replicas that an earlier one launched exactly like its own.

Handle (JSON-able, what the server stores)::

    {"executor": "local", "status_dir": ..., "log_path": ..., "node": ...,
     "supervisor_pid": int,
     "workload_id": ..., "role": ..., "replica": int, "attempt": int}

Pids are never trusted alone: the supervisor records its own and the command's
pid with their start times (``status_dir/supervisor``, ``status_dir/pid``), and a
process with the same pid but another start time is a stranger.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from plinth.executors import supervisor as _supervisor
from plinth.executors.base import EXIT_LOST, Executor, NodeCapacity, ReplicaLaunch
from plinth.units import parse_memory_mib

__all__ = ["LocalExecutor", "machine_capacity", "parse_memory_mib"]

_SUPERVISOR_PATH = os.path.abspath(_supervisor.__file__)
#: How the supervisor is started: ``python -I -S -c BOOT <supervisor.py> <args>``.
#: -I: no PYTHON* variables, no user site, no script/cwd on sys.path; -S: no
#: site-packages (stdlib only). Loading the file through its module loader uses
#: the cached bytecode (__pycache__); a script given by path would be compiled
#: on every start (~5 ms, on every replica's start-up).
BOOT = (
    "import sys\n"
    "try:\n"
    "    from _frozen_importlib import module_from_spec, spec_from_loader\n"
    "    from _frozen_importlib_external import SourceFileLoader\n"
    "    loader = SourceFileLoader('plinth_supervisor', sys.argv[1])\n"
    "    module = module_from_spec(spec_from_loader(loader.name, loader))\n"
    "    loader.exec_module(module)\n"
    "    module.entry(sys.argv[2:])\n"
    "except ImportError:  # not CPython: run it as a script\n"
    "    import runpy\n"
    "    sys.argv = sys.argv[1:]\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
#: What a replica inherits from the server's environment: the basics a program
#: expects, and the knobs of numeric libraries (OPENBLAS_CORETYPE is needed for
#: correct results on some processors). Nothing else: the server's environment
#: holds secrets (PLINTH_DATABASE_URL with its password, cloud credentials,
#: PLINTH_ADMIN_TOKEN) that are no replica's business.
INHERITED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
})  # fmt: skip
INHERITED_ENV_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "NVIDIA_")


def inherited_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of ``environ`` (default: this process's) a replica gets."""
    environ = os.environ if environ is None else environ
    return {
        k: v
        for k, v in environ.items()
        if k in INHERITED_ENV or k.startswith(INHERITED_ENV_PREFIXES)
    }


def _identity_env(uid: int, workdir: Path) -> dict[str, str]:
    """HOME, USER and LOGNAME of a replica running as ``uid``: the server's own would
    point into a home the replica cannot enter."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return {"HOME": os.fspath(os.path.abspath(workdir)), "USER": name, "LOGNAME": name}


#: A port handed out is not handed out again for this long (seconds): the replica
#: it was meant for may not have bound it yet.
_PORT_QUARANTINE_S = 120.0


def machine_capacity(name: str = "local") -> NodeCapacity:
    """This machine as one node: ``os.cpu_count()`` cores, ``MemTotal`` of
    /proc/meminfo in MiB, no GPUs (declare GPUs in configuration)."""
    memory_mib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory_mib = int(line.split()[1]) // 1024  # the file says kB (KiB)
                    break
    except OSError:
        pass
    return NodeCapacity(name=name, cpu=float(os.cpu_count() or 1), memory_mib=memory_mib, gpu=0)


def _node_from_config(item: NodeCapacity | Mapping[str, Any]) -> NodeCapacity:
    if isinstance(item, NodeCapacity):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(f"a node must be a mapping {{name, cpu, memory, gpu}}, got {item!r}")
    unknown = set(item) - {"name", "cpu", "memory", "memory_mib", "gpu", "address"}
    if unknown:
        raise ValueError(
            f"node {item.get('name')!r}: unknown field(s) {', '.join(sorted(unknown))}; "
            "allowed: name, cpu, memory (e.g. 4Gi), gpu, address"
        )
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"every node needs a non-empty string `name`, got {item!r}")
    try:
        cpu = float(item.get("cpu", 0))
        gpu = int(item.get("gpu", 0))
    except (TypeError, ValueError):
        raise ValueError(
            f"node {name!r}: cpu must be a number of cores and gpu an integer"
        ) from None
    try:  # one parser for specs, the configuration and here: a bare number is MiB
        memory_mib = parse_memory_mib(item.get("memory_mib", item.get("memory", 0)))
    except ValueError as e:
        raise ValueError(f"node {name!r}: {e}") from None
    if cpu < 0 or gpu < 0:
        raise ValueError(f"node {name!r}: cpu and gpu must not be negative")
    return NodeCapacity(
        name=name,
        cpu=cpu,
        memory_mib=memory_mib,
        gpu=gpu,
        address=str(item.get("address", "127.0.0.1")),
    )


def _same_process(pid: int, start: int | None) -> bool:
    """Whether ``pid`` is alive, not a zombie, and the very process started at ``start``."""
    now = _supervisor.proc_start_time(pid)
    if now is None:
        return False
    return not start or now == start


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _read_exit_code(status_dir: Path) -> int | None:
    text = _read_text(status_dir / "exit_code")
    return int(text) if text and text.strip() else None


def _read_child(status_dir: Path) -> tuple[int, int] | None:
    return _read_ident(status_dir / "pid")


def _read_ident(path: Path) -> tuple[int, int] | None:
    """``(pid, start time)`` from a ``"<pid> <start>"`` file, ``None`` if absent."""
    text = _read_text(path)
    if not text:
        return None
    pid, _, start = text.strip().partition(" ")
    return int(pid), int(start or 0)


class LocalExecutor(Executor):
    """Replicas as supervised subprocesses of this machine (see the module docstring).

    ``nodes``: the capacity to report (``NodeCapacity`` or ``{name, cpu, memory,
    gpu}`` mappings, memory like ``"4Gi"``); default this machine as node
    ``"local"``. ``state_dir``: where per-replica status directories go (default:
    a ``.status`` folder beside each log file). ``run_as_owner``: run each replica as
    the owner of its working directory (refusing root-owned ones) -- the server's
    isolation mode prepares directories owned by each group's OS user (see
    plinth.services.isolation). ``log_max_bytes``: each attempt's log is kept to about
    this size, its head and tail (0: no cap; see supervisor.CappedLog). ``python``:
    the interpreter that
    runs the supervisor (default ``sys.executable``). ``nice``: the niceness increment
    (0-19) every supervisor runs at (started through ``nice``, or applying it itself
    first where there is no ``nice``), inherited by the command: replicas then yield
    the CPU to the control plane on a busy machine.
    """

    name = "local"

    def __init__(
        self,
        nodes: Iterable[NodeCapacity | Mapping[str, Any]] | None = None,
        state_dir: str | Path | None = None,
        python: str | None = None,
        nice: int = 0,
        run_as_owner: bool = False,
        log_max_bytes: int = 0,
    ) -> None:
        if not 0 <= int(nice) <= 19:
            raise ValueError(f"nice must be an increment from 0 to 19, got {nice!r}")
        # Not by a preexec_fn: that would make Popen fork instead of vfork, costing ~ms
        # per launch. By `nice` in front of the supervisor where there is one, so that
        # the interpreter's own start-up is niced too; else by the supervisor's first line.
        self._run_as_owner = bool(run_as_owner)
        if log_max_bytes < 0:
            raise ValueError(f"log_max_bytes must be >= 0 (0: no cap), got {log_max_bytes}")
        self._log_max = int(log_max_bytes)
        self._python = python or sys.executable
        nice_program = shutil.which("nice") if nice else None
        # Not in front of a missing interpreter: Popen then fails at once, as it should,
        # rather than `nice` failing unseen in the child.
        usable = nice_program and os.access(self._python, os.X_OK)
        self._prefix = [nice_program, "-n", str(int(nice))] if usable else []
        self._boot = f"import os; os.nice({int(nice)})\n" + BOOT if nice and not usable else BOOT
        self._nodes = (
            [machine_capacity()] if nodes is None else [_node_from_config(n) for n in nodes]
        )
        names = [n.name for n in self._nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        # Absolute: the supervisor runs in the replica's working directory.
        self._state_dir = Path(state_dir).absolute() if state_dir is not None else None
        # Supervisors this instance started are its children: reap them (no zombies).
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._killers: list[subprocess.Popen[bytes]] = []
        self._ports: dict[int, float] = {}
        self._seq = itertools.count(1)  # next() is atomic in CPython: thread-safe
        self._lock = threading.Lock()

    # -- inventory ---------------------------------------------------------------

    def inventory(self) -> list[NodeCapacity]:
        return list(self._nodes)

    def _node(self, name: str) -> NodeCapacity:
        for node in self._nodes:
            if node.name == name:
                return node
        raise ValueError(
            f"unknown node {name!r}; this executor has: {', '.join(n.name for n in self._nodes)}"
        )

    # -- launch --------------------------------------------------------------------

    def launch(self, spec: ReplicaLaunch) -> dict:
        node = self._node(spec.node)
        if not spec.command:
            raise ValueError("the command is empty: give at least the program to run")
        if len(set(spec.gpus)) != len(spec.gpus) or any(not 0 <= g < node.gpu for g in spec.gpus):
            raise ValueError(
                f"GPUs {list(spec.gpus)} do not fit node {node.name!r}, which has "
                f"{node.gpu} GPU(s) numbered 0..{node.gpu - 1}: give distinct indices in range"
            )
        log_path = os.path.abspath(spec.log_path)  # the supervisor's cwd is the workdir
        status_dir = self._status_dir_for(spec, log_path)
        # Created before the supervisor starts (one mkdir, ~µs): from now on a server
        # that dies before recording the handle can find it (find_launched) and stop
        # it, even if the supervisor has not started yet (it obeys a `stop` file).
        os.makedirs(status_dir, exist_ok=True)
        env = inherited_env()
        env.update(spec.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in spec.gpus)
        run_as = self._owner(spec.workdir) if self._run_as_owner else None
        if run_as is not None:
            env.update(_identity_env(run_as[0], spec.workdir))
        argv = [
            *self._prefix, self._python, "-I", "-S", "-c", self._boot, _SUPERVISOR_PATH,
            "--status-dir", status_dir,
            "--log", log_path,
            "--grace", repr(float(spec.grace_s)),
        ]  # fmt: skip
        if spec.timeout_s is not None:
            argv += ["--timeout", repr(float(spec.timeout_s))]
        if run_as is not None:
            argv += ["--user", f"{run_as[0]}:{run_as[1]}"]
        if self._log_max:
            argv += ["--log-max", str(self._log_max)]
        argv += ["--", *spec.command]
        try:
            proc = subprocess.Popen(
                argv,
                cwd=spec.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            if not Path(spec.workdir).is_dir():
                raise ValueError(f"working directory {spec.workdir} does not exist") from None
            raise ValueError(f"cannot start the supervisor: {exc}") from None
        with self._lock:
            self._children[proc.pid] = proc
        return {
            "executor": self.name,
            "status_dir": status_dir,
            "log_path": log_path,
            "node": spec.node,
            # Its start time (against pid reuse) is in status_dir/supervisor, written
            # by itself: reading /proc/<pid>/stat here would wait for the exec (~ms).
            "supervisor_pid": proc.pid,
            "workload_id": spec.workload_id,
            "role": spec.role,
            "replica": spec.replica,
            "attempt": spec.attempt,
        }

    @staticmethod
    def _owner(workdir: Path) -> tuple[int, int]:
        """(uid, gid) the replica runs as: its working directory's owner, never root."""
        try:
            st = os.stat(workdir)
        except FileNotFoundError:
            raise ValueError(f"working directory {workdir} does not exist") from None
        if st.st_uid == 0:
            raise ValueError(
                f"working directory {workdir} belongs to root: isolated replicas run as "
                "their working directory's owner, and never as root"
            )
        return st.st_uid, st.st_gid

    def _status_base(self, workload_id: str, log_path: str) -> str:
        if self._state_dir is not None:
            return os.path.join(self._state_dir, _safe(workload_id))
        return os.path.join(os.path.dirname(log_path), ".status")

    def _status_dir_for(self, spec: ReplicaLaunch, log_path: str) -> str:
        """A new status directory path for this attempt,
        ``<base>/<role>-<replica>-<attempt>-<hex stamp>``: :meth:`find_launched` finds
        it again from the replica's names alone."""
        base = self._status_base(spec.workload_id, log_path)
        # Unique even if the caller launches the same attempt again (after a crash).
        stamp = f"{time.time_ns():x}{next(self._seq):x}"
        return os.path.join(base, f"{_safe(spec.role)}-{spec.replica}-{spec.attempt}-{stamp}")

    def find_launched(
        self, workload_id: str, role: str, replica: int, attempt: int, log_path: str | Path
    ) -> list[dict]:
        """Handles for every status directory of this attempt (see the base class).

        ``launch`` creates the directory before starting the supervisor, so a replica
        started just before the server died is found by the next server. The handle
        carries the supervisor's pid from its ``supervisor`` file (0 when it has not
        written one yet). Call :meth:`stop` on such a handle before :meth:`poll`: the
        ``stop`` file also reaches a supervisor that has not started yet, which then
        stops its command at once; a poll before that would report it lost."""
        log_path = os.path.abspath(log_path)
        base = self._status_base(workload_id, log_path)
        pattern = re.compile(re.escape(f"{_safe(role)}-{replica}-{attempt}-") + "[0-9a-f]+")
        try:
            names = sorted(n for n in os.listdir(base) if pattern.fullmatch(n))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            status_dir = os.path.join(base, name)
            ident = _read_ident(Path(status_dir) / "supervisor")
            out.append({
                "executor": self.name, "status_dir": status_dir, "log_path": log_path,
                "node": None, "supervisor_pid": ident[0] if ident else 0,
                "supervisor_start": ident[1] if ident else 0,
                "workload_id": workload_id, "role": role, "replica": replica,
                "attempt": attempt,
            })  # fmt: skip
        return out

    # -- poll ------------------------------------------------------------------------

    def _supervisor_alive(self, handle: Mapping[str, Any]) -> bool:
        pid = int(handle["supervisor_pid"])
        with self._lock:
            proc = self._children.get(pid)
        if proc is not None:
            # Our own child: an unreaped child's pid cannot be reused, so poll() is
            # the whole answer (and reaps it); the files and /proc are for supervisors
            # re-adopted after a restart.
            if proc.poll() is None:
                return True
            with self._lock:
                self._children.pop(pid, None)
            return False
        ident = _read_ident(Path(handle["status_dir"]) / "supervisor")
        if ident is not None:
            return _same_process(*ident)
        # Not written yet: the supervisor is starting (or died at once, and then
        # only a pid reused within that instant could fool this check).
        return _same_process(pid, int(handle.get("supervisor_start") or 0))

    def poll(self, handle: dict) -> int | None:
        status_dir = Path(handle["status_dir"])
        code = _read_exit_code(status_dir)
        if code is not None:
            self._reap(handle)
            return code
        if self._supervisor_alive(handle):
            return None
        # The supervisor is gone. It may have written the code just before exiting.
        code = _read_exit_code(status_dir)
        if code is not None:
            return code
        child = _read_child(status_dir)
        if child is not None and _same_process(*child):
            # Orphaned but running: report it as running; `stop` still reaches it.
            return None
        status_dir.mkdir(parents=True, exist_ok=True)  # a supervisor that never started
        _supervisor.write_atomic(os.fspath(status_dir / "reason"), "lost\n")
        _supervisor.write_atomic(os.fspath(status_dir / "exit_code"), f"{EXIT_LOST}\n")
        return EXIT_LOST

    def exit_reason(self, handle: dict) -> str | None:
        """How the replica ended: ``exited``, ``stopped`` (by :meth:`stop`),
        ``timeout`` (``timeout_s``), ``exec-failed``, ``supervisor-error``, ``lost``;
        ``None`` while it runs."""
        if self.poll(handle) is None:
            return None
        text = _read_text(Path(handle["status_dir"]) / "reason")
        return text.strip() if text else "exited"

    def replica_pid(self, handle: dict) -> int | None:
        """The command's pid (also its process group id), once started."""
        child = _read_child(Path(handle["status_dir"]))
        return child[0] if child else None

    def _reap(self, handle: Mapping[str, Any]) -> None:
        pid = int(handle["supervisor_pid"])
        with self._lock:
            proc = self._children.get(pid)
        if proc is not None and proc.poll() is not None:
            with self._lock:
                self._children.pop(pid, None)

    # -- stop ------------------------------------------------------------------------

    def stop(self, handle: dict, grace_s: float) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0 seconds, got {grace_s}")
        status_dir = Path(handle["status_dir"])
        if _read_exit_code(status_dir) is not None:
            return
        # `stop` first, then look for `pid`: a supervisor that is not ready for
        # signals yet reads `stop` right after writing `pid` (see supervisor.py).
        status_dir.mkdir(parents=True, exist_ok=True)  # the supervisor may not have yet
        _supervisor.write_atomic(os.fspath(status_dir / "stop"), f"{float(grace_s)!r}\n")
        child = _read_child(status_dir)
        if self._supervisor_alive(handle):
            if child is not None:
                try:
                    os.kill(int(handle["supervisor_pid"]), signal.SIGTERM)
                except ProcessLookupError:
                    pass
            return
        if child is not None and _same_process(*child):
            # Supervisor gone, command still running: a detached one-shot killer
            # does the escalation, so it happens even if this server dies now.
            self._killers = [k for k in self._killers if k.poll() is None]  # reap old ones
            killer = subprocess.Popen(
                [
                    self._python,
                    "-I",
                    "-S",
                    "-c",
                    BOOT,
                    _SUPERVISOR_PATH,
                    "--kill-group",
                    str(child[0]),
                    "--leader-start",
                    str(child[1]),
                    "--grace",
                    repr(float(grace_s)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            self._killers.append(killer)

    # -- logs and ports ------------------------------------------------------------------

    def read_log(self, handle_or_path: dict | str | Path, offset: int, limit: int) -> bytes:
        if limit < 0:
            raise ValueError(f"limit must be >= 0 bytes, got {limit}")
        if isinstance(handle_or_path, Mapping):
            path = Path(handle_or_path["log_path"])
        else:
            path = Path(handle_or_path)
        try:
            with open(path, "rb") as f:
                if offset < 0:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(max(size + offset, 0))
                else:
                    f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""

    def allocate_port(self, node: str) -> int:
        self._node(node)
        now = time.monotonic()
        with self._lock:
            self._ports = {p: t for p, t in self._ports.items() if now - t < _PORT_QUARANTINE_S}
            for _ in range(100):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("", 0))
                    port = s.getsockname()[1]
                if port not in self._ports:
                    self._ports[port] = now
                    return port
        raise OSError("no free TCP port found after 100 tries")


def _safe(name: str) -> str:
    """``name`` made safe as one path component."""
    return _UNSAFE_NAME.sub("_", name).strip(".") or "_"
