"""The executor interface: how the control plane starts, watches and stops replicas.

In the spirit of JupyterHub's ``Spawner``: one small base class whose docstring is
the contract, a short registry name per backend, and a JSON-able *handle* per
replica that is enough to re-attach after a server restart. Backends return data
and never touch the platform's database; the service layer records what they say.

Exit codes (what :meth:`Executor.poll` returns once a replica has ended):

* ``0..255``  -- the process exited with that status (``126``/``127``: the command
  could not be executed / was not found, as in a POSIX shell);
* ``-N``      -- the process was killed by signal ``N`` (``-9``: SIGKILL, ``-15``: SIGTERM);
* :data:`EXIT_LOST` (``1000``) -- the replica's outcome is unknowable: its
  supervisor was killed (e.g. ``kill -9``) before it could record the exit status,
  and the process is gone. Never a real exit status, never a signal number.

Use :func:`describe_exit` to turn a code into words for events and logs.
"""

from __future__ import annotations

import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

if TYPE_CHECKING:  # a supervisor imports this package: keep it free of numpy
    from plinth.scheduler.resources import Resources

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

#: Exit code reported for a replica whose supervisor died without recording an
#: exit status and whose process is gone too (see the module docstring).
EXIT_LOST: Final[int] = 1000


@dataclass(frozen=True)
class NodeCapacity:
    """A node the executor can place replicas on, and its total capacity.

    ``cpu`` in cores (fractions allowed), ``memory_mib`` in MiB, ``gpu`` whole
    devices. ``address`` is the host other replicas use to reach a replica on
    this node (what goes into ``PLINTH_ROLES`` next to the port).
    """

    name: str
    cpu: float
    memory_mib: int
    gpu: int
    address: str = "127.0.0.1"

    @property
    def resources(self) -> Resources:
        """The node's total capacity as the one resource value."""
        from plinth.scheduler.resources import Resources

        return Resources(float(self.cpu), int(self.memory_mib), int(self.gpu))


@dataclass(frozen=True)
class ReplicaLaunch:
    """Everything needed to start one attempt of one replica.

    ``command`` is an argv run as is (no shell). ``env`` is the full contract
    environment filled in by the caller (``PLINTH_*``, ``MASTER_*``, ...); the
    executor adds only ``CUDA_VISIBLE_DEVICES`` (from ``gpus``; ``""`` when none)
    and inherits the server's environment (``PATH`` etc.) underneath.
    ``workdir`` is the cwd, prepared by the caller before launch. ``log_path``
    receives stdout and stderr of this attempt (one file per attempt).

    Optional, beyond the contract: ``timeout_s`` makes the supervisor itself stop
    the replica (SIGTERM, then SIGKILL after ``grace_s``) once it has run that many
    seconds, so ``max_runtime`` holds even while the server is down.
    """

    workload_id: str
    role: str
    replica: int
    attempt: int
    command: list[str]
    env: dict[str, str]
    workdir: Path
    log_path: Path
    node: str
    gpus: tuple[int, ...] = ()
    timeout_s: float | None = None
    grace_s: float = 10.0
    #: The replica's reservation ``{"cpu": cores, "memory": MiB, "gpu": n}`` when the
    #: caller knows it; a backend that reserves resources itself (ray) uses it.
    resources: Mapping[str, Any] | None = None


class Executor(ABC):
    """Starts, observes and stops the replicas of workloads.

    A backend implements every abstract method below; a subclass that misses
    one fails when its class statement runs (``TypeError`` from
    ``__init_subclass__``), not later when someone instantiates it. Pass
    ``abstract=True`` in the class statement for an intermediate base class.

    Contract:

    ``inventory() -> list[NodeCapacity]``
        The nodes and their total capacity (cores, MiB, GPUs). Cheap; may be
        called every scheduling cycle.
    ``launch(spec) -> dict``
        Starts one replica attempt and returns at once (no waiting for the
        program to initialise) with a small JSON-able *handle*. The handle is
        all the server needs to store: after a restart, a fresh executor
        instance given the same handle can ``poll``, ``stop`` and ``read_log``.
        Raises ``ValueError`` for a spec it cannot run (unknown node, missing
        workdir); ``OSError`` for resource failures.
    ``poll(handle) -> int | None``
        ``None`` while the replica runs; else its exit code (see the module
        docstring: ``-N`` for signal N, :data:`EXIT_LOST` when unknowable).
        Never blocks; once a code is returned, later polls return the same one.
    ``stop(handle, grace_s) -> None``
        Non-blocking: SIGTERM to the replica's process group now; SIGKILL
        after ``grace_s`` seconds is guaranteed even if the server dies
        meanwhile. Idempotent, and a no-op on a replica that already ended.
        Observe the end with ``poll``.
    ``read_log(handle_or_path, offset, limit) -> bytes``
        Up to ``limit`` bytes of the attempt's output starting at byte
        ``offset`` (negative: from the end); ``b""`` past the end or before
        the file exists.
    ``allocate_port(node) -> int``
        A TCP port free on ``node`` now and not handed out recently by this
        executor (the caller passes it to the replica as ``PLINTH_PORT``).
    """

    #: Registry name, e.g. ``"local"``; what configuration uses to pick the backend.
    name: ClassVar[str]

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        # ABCMeta computes __abstractmethods__ only after this hook, so look
        # at the attributes ourselves: fail at class creation, not at first use.
        missing = sorted(
            name
            for name in _abstract_method_names()
            if getattr(getattr(cls, name, None), "__isabstractmethod__", False)
        )
        if missing:
            raise TypeError(
                f"executor {cls.__qualname__} must implement {', '.join(missing)} "
                "(see plinth.executors.base.Executor), or be declared with abstract=True"
            )
        if not isinstance(cls.__dict__.get("name", getattr(cls, "name", None)), str):
            raise TypeError(
                f"executor {cls.__qualname__} must set a class attribute `name` "
                "(its registry name, e.g. 'local')"
            )

    @abstractmethod
    def inventory(self) -> list[NodeCapacity]:
        """The nodes and their total capacity."""

    @abstractmethod
    def launch(self, spec: ReplicaLaunch) -> dict:
        """Start one replica attempt; return its JSON-able handle at once."""

    @abstractmethod
    def poll(self, handle: dict) -> int | None:
        """``None`` while running, else the exit code."""

    @abstractmethod
    def stop(self, handle: dict, grace_s: float) -> None:
        """SIGTERM now, SIGKILL after ``grace_s``; non-blocking and idempotent."""

    @abstractmethod
    def read_log(self, handle_or_path: dict | str | Path, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the attempt's log from ``offset``."""

    @abstractmethod
    def allocate_port(self, node: str) -> int:
        """A free TCP port on ``node``."""

    def find_launched(
        self, workload_id: str, role: str, replica: int, attempt: int, log_path: str | Path
    ) -> list[dict]:
        """Handles of every start of this replica attempt that the backend can still
        find, whether or not the caller recorded the handle ``launch`` returned.

        Used after a crash between ``launch`` and recording its handle: the server
        stops what it finds instead of leaving it running unseen. ``log_path`` is the
        one the launch was given. The default finds nothing (a backend that cannot
        look replicas up by name); :class:`~plinth.executors.local.LocalExecutor`
        overrides it.
        """
        return []

    def reserve(self, workload_id: str, attempt: int, specs: Sequence[ReplicaLaunch]) -> None:
        """Reserve the resources of a whole gang (every replica of one workload attempt,
        each on the node the scheduler chose) before its replicas are launched. Raises
        (any exception, its message said to the user) when it cannot. The default does
        nothing: the local executor's capacity is the scheduler's alone.
        :class:`~plinth.executors.ray_executor.RayExecutor` creates a placement group."""

    def exit_reason(self, handle: dict) -> str | None:
        """Why an ended replica ended, beyond its exit code, or ``None`` when the backend
        cannot tell: ``"timeout"`` (the backend stopped it at ``timeout_s``) or
        ``"stopped"`` (it ended on a stop signal -- which the server compares with the
        stops it asked for). Called only after ``poll`` returned a code. The default
        knows nothing; :class:`~plinth.executors.local.LocalExecutor` reads what its
        supervisor wrote."""
        return None

    # -- helpers shared by all backends (not part of what a backend must write) --

    def wait(self, handle: dict, timeout_s: float, interval_s: float = 0.01) -> int | None:
        """Poll until the replica ends or ``timeout_s`` seconds pass.

        Returns the exit code, or ``None`` on timeout. Meant for tests and the
        CLI; the server's loop should call :meth:`poll` instead.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.poll(handle)
            if code is not None or time.monotonic() >= deadline:
                return code
            time.sleep(interval_s)


def _abstract_method_names() -> frozenset[str]:
    return frozenset(
        name
        for name, value in vars(Executor).items()
        if getattr(value, "__isabstractmethod__", False)
    )


def describe_exit(code: int) -> str:
    """Words for an exit code, for events and logs: ``"exited with status 1"``,
    ``"killed by signal 9 (SIGKILL)"``, ``"lost: ..."``."""
    if code == EXIT_LOST:
        return (
            "lost: the replica's supervisor was killed before it could record an exit "
            "status, and the process is gone"
        )
    if code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = "unknown signal"
        return f"killed by signal {-code} ({signame})"
    if code == 127:
        return "exited with status 127 (command not found)"
    if code == 126:
        return "exited with status 126 (command not executable)"
    return f"exited with status {code}"


# -- registry -----------------------------------------------------------------

# Built-in backends are imported lazily so that `import plinth.executors` stays
# cheap and an optional dependency (ray) is needed only when chosen.
_BUILTIN: dict[str, str] = {
    "local": "plinth.executors.local:LocalExecutor",
    "ray": "plinth.executors.ray_executor:RayExecutor",
}
_REGISTERED: dict[str, type[Executor]] = {}


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Make ``cls`` available to :func:`get_executor` under ``cls.name``."""
    _REGISTERED[cls.name] = cls
    return cls


def registered_executors() -> list[str]:
    """The names :func:`get_executor` accepts."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get_executor(name: str, **config: Any) -> Executor:
    """Instantiate the executor registered as ``name`` with ``config`` as keyword
    arguments. Raises ``ValueError`` naming the known executors for an unknown name."""
    cls = _REGISTERED.get(name)
    if cls is None and name in _BUILTIN:
        import importlib

        module_name, _, attr = _BUILTIN[name].partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    if cls is None:
        raise ValueError(
            f"unknown executor {name!r}; choose one of: {', '.join(registered_executors())}"
        )
    return cls(**config)
