"""Server configuration: a YAML file (``plinth server --config FILE`` or ``PLINTH_CONFIG``).

Every key is optional; an empty file gives a working single-machine server. Example::

    nodes:                         # the local executor's capacity; default: this machine
      - {name: local, cpu: 8, memory: 32Gi, gpu: 2}
    executor: local                # or {kind: ray, address: HOST:6379} (docs/scale-out.md)
    executor_nice: 5               # niceness (0-19) of replicas under the local executor
    scheduler:
      poll_interval: 0.25          # seconds between polls of running replicas and deadlines
      weights: {aging: 4, runtime: 1, size: 0.5, fit: 0.5, fair_share: 1, priority: 1}
      aging_saturation: 6h         # every other key: docs/configuration.md, docs/scheduling.md
      reclaim_grace: 30s           # SIGTERM -> SIGKILL for preempted (reclaimed) workloads
      queue_heads_per_group: 1000  # pending workloads of each group every cycle looks at
      max_pending_per_user: 5000   # default: no limit (a submit over it gets 429)
    code:
      git_local_roots: []          # directories whose git repos members may use as code
      git_protocols: [https, ssh, file]  # the only transports git may use (protocol.allow)
      git_timeout: 10s             # submit-time ref resolution (holds a request thread)
      checkout_timeout: 2m         # checkout of an admitted job (a worker thread)
      prepare_workers: 4           # threads preparing code (git checkout, extraction)
    jobs:
      default_max_runtime: 1d      # when a spec gives none
      max_max_runtime: 30d         # the largest max_runtime a spec may ask for
      grace: 10s                   # SIGTERM -> SIGKILL on cancel, timeout and gang stop
      retry_backoff: {initial: 5s, factor: 2, max: 5m}
    uploads:
      max_packed: 100Mi            # size of the uploaded .tar.gz
      max_unpacked: 1Gi            # total size of its members
      max_files: 100000
      max_per_user: 5Gi            # stored archives one user's uploads may hold
      max_total: 50Gi              # stored archives all uploads may hold
    api:
      max_body: 1Mi                # any other request body (JSON); more is a 413
    logs:
      max_per_replica: 64Mi        # each attempt's log: head + tail beyond this
    retention:                     # what finished is removed after (docs/security.md)
      workloads: 7d                # working directories and logs of finished workloads
      uploads: 30d                 # archives no live workload uses, unused this long
      sweep_interval: 1h
    isolation:                     # who replicas run as (docs/security.md)
      mode: auto                   # auto: `users` when the server is root, else `off`
      run_root: /var/lib/plinth/run  # replicas' working directories (root: 0711)
      user_prefix: plinth-         # OS users plinth-<group id>-<group>, made on demand
    url: http://127.0.0.1:8321     # PLINTH_URL given to replicas; default: where the server listens
    notebooks:                     # JupyterLab sessions (docs/notebooks.md)
      idle_timeout: 1h             # default; a session may ask for another
      gpu_idle_timeout: 30m        # default for sessions holding GPUs (falls back to idle_timeout)
      max_lifetime: 8h             # default lifetime; `extend` pushes it
      max_idle_timeout: 1d         # the largest idle timeout a session may ask for
      lifetime_cap: 7d             # the longest a session may live, extensions included
      groups: {ads: {gpu_idle_timeout: 10m, lifetime_cap: 1d}}   # per-group overrides
      check_interval: 10s          # how often each session's activity is read
      start_timeout: 2m            # JupyterLab must answer within this after its start
      warn_fraction: 0.8           # warn at this share of the idle timeout / lifetime
      jupyter_args: []             # more options for `jupyter lab`

Durations take seconds or ``90s``/``30m``/``2h``/``1d``; sizes take MiB or ``512Mi``/``4Gi``/``1G``.
Environment: ``PLINTH_HOME`` (default ``~/.plinth``), ``PLINTH_DATABASE_URL`` (default SQLite
under PLINTH_HOME), ``PLINTH_CONFIG``, ``PLINTH_ISOLATION`` (the default of
``isolation.mode``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from plinth import scheduler as core
from plinth.services.units import parse_duration_s, parse_memory_mib, parse_size_bytes

__all__ = [
    "CodeConfig",
    "ConfigError",
    "IsolationConfig",
    "NodeConfig",
    "RayExecutorConfig",
    "RetryBackoff",
    "SchedulerConfig",
    "ServerConfig",
    "database_url",
    "load_config",
    "plinth_home",
    "secure_home",
]


_log = logging.getLogger("plinth.config")


class ConfigError(ValueError):
    """The configuration file is missing or invalid; the message names the key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(v: Any) -> float:
    return parse_duration_s(v)


class NodeConfig(_Strict):
    """One node of the local executor: capacity in cores, MiB and whole GPUs."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    cpu: float = Field(gt=0, le=100_000)
    memory: int = Field(description="MiB (or a string with units in YAML)")
    gpu: int = Field(default=0, ge=0, le=1024)
    # The address other replicas use to reach this node's replicas.
    address: str = "127.0.0.1"

    @field_validator("memory", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return parse_memory_mib(v)


class RetryBackoff(_Strict):
    """Delay before retry n (1-based): min(initial * factor**(n-1), max), in seconds."""

    initial: float = 5.0
    factor: float = Field(default=2.0, ge=1.0, le=100.0)
    max: float = 300.0

    _v = field_validator("initial", "max", mode="before")(classmethod(lambda cls, v: _duration(v)))

    def delay_s(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        return min(self.initial * self.factor ** max(retry - 1, 0), self.max)


# YAML key (durations without the core's ``_s`` suffix) -> the core's field name.
_DURATION_KEYS = {
    "aging_saturation": "aging_saturation_s",
    "runtime_reference": "runtime_reference_s",
    "fair_share_half_life": "fair_share_half_life_s",
    "reclaim_grace": "reclaim_grace_s",
    "reclaim_after": "reclaim_after_s",
    "borrow_max_runtime": "borrow_max_runtime_s",
    "reclaim_hold": "reclaim_hold_s",
}


# Durations that may be zero: a delay, not a length of time something runs.
_DELAY_KEYS = frozenset({"reclaim_after"})
# Keys of the control loop itself, not of the quota scheduler's policy.
_LOOP_KEYS = frozenset({"poll_interval", "admit_on_submit", "max_pending_per_user",
                        "max_pending_per_group"})


class SchedulerConfig(_Strict):
    """The ``scheduler:`` section: the control loop's poll interval plus the quota
    scheduler's weights, limits and switches (``plinth.scheduler.SchedulerConfig``;
    every key in docs/configuration.md). Unset keys keep the core's defaults.
    Durations take seconds or units (``6h``); ``policy()`` gives the core's config."""

    poll_interval: float = 0.25
    # Try to admit a job in its submit request when nothing else waits (as Slurm tries
    # each job at submit unless SchedulerParameters=defer): same scheduler, same input
    # as the loop would use, a few ms sooner. See docs/scheduling.md.
    admit_on_submit: bool = True
    # Pending workloads one user / one group may have; a submit over it is a 429.
    max_pending_per_user: int | None = Field(default=None, ge=1)
    max_pending_per_group: int | None = Field(default=None, ge=1)
    weights: dict[str, float] | None = None
    aging_saturation: float | None = None
    runtime_reference: float | None = None
    size_reference: float | None = None
    fair_share_half_life: float | None = None
    priority_classes: dict[str, float] | None = None
    default_priority: float | None = None
    reclaim_grace: float | None = None
    reclaim_after: float | None = None
    max_admissions_per_cycle: int | None = None
    borrow_max_runtime: float | None = None
    cpu_work_on_gpu_nodes: bool | None = None
    ordering: str | None = None
    borrowing: bool | None = None
    fair_borrowing: bool | None = None
    reclaim: bool | None = None
    reclaim_least_lost_first: bool | None = None
    reclaim_hold: float | None = None
    queue_heads_per_group: int | None = None
    backfill: bool | None = None
    placement: str | None = None

    _policy: core.SchedulerConfig = PrivateAttr(default_factory=core.SchedulerConfig)

    _v = field_validator("poll_interval", mode="before")(classmethod(lambda cls, v: _duration(v)))
    _d = field_validator(*(_DURATION_KEYS.keys() - _DELAY_KEYS), mode="before")(
        classmethod(lambda cls, v: None if v is None else _duration(v))
    )
    _z = field_validator(*_DELAY_KEYS, mode="before")(
        classmethod(lambda cls, v: None if v is None else parse_duration_s(v, allow_zero=True))
    )

    @model_validator(mode="after")
    def _build_policy(self) -> SchedulerConfig:
        values: dict[str, object] = {}
        for key in self.model_fields_set - _LOOP_KEYS:
            v = getattr(self, key)
            if v is None and key != "borrow_max_runtime" and key != "max_admissions_per_cycle":
                continue
            values[_DURATION_KEYS.get(key, key)] = v
        try:
            self._policy = core.config_from_dict(values)
        except (ValueError, TypeError) as e:
            raise ValueError(str(e)) from None
        return self

    def policy(self) -> core.SchedulerConfig:
        """The quota scheduler's configuration (weights, limits, switches)."""
        return self._policy

    @property
    def priority_names(self) -> tuple[str, ...]:
        """The priority classes a job may name."""
        return tuple(self._policy.priority_classes)


class CodeConfig(_Strict):
    """``code:``: where members may take code from on the server's own disk.

    ``git_local_roots``: directories under which a member's ``code: {git: PATH}`` (or a
    ``file://`` URL) may point; admins may use any local path. Empty: members may use
    remote git URLs only."""

    git_local_roots: list[str] = Field(default_factory=list)
    #: Transports git may use (``protocol.allow=never`` plus these): ``file`` only ever
    #: reaches paths allowed by ``git_local_roots`` (admins: any), ``ext`` never.
    git_protocols: list[str] = Field(default_factory=lambda: ["https", "ssh", "file"])
    #: Seconds the submit-time resolution of a ref may take, all git commands together
    #: (it holds the request's thread); a hung remote is killed with its process group.
    git_timeout: float = Field(default=10.0, gt=0, le=600)
    #: Seconds one checkout of an admitted job's commit may take (in a worker thread).
    checkout_timeout: float = Field(default=120.0, gt=0, le=86400)
    #: Worker threads preparing code (git checkout, archive extraction): at most this
    #: many preparations run at once; the control loop's thread never waits for one.
    prepare_workers: int = Field(default=4, ge=1, le=64)

    _v = field_validator("git_timeout", "checkout_timeout", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )

    @field_validator("git_protocols")
    @classmethod
    def _known_protocols(cls, v: list[str]) -> list[str]:
        allowed = {"https", "ssh", "file", "http", "git"}
        bad = sorted(set(v) - allowed)
        if bad:
            raise ValueError(
                f"unknown or unsafe git protocol(s) {', '.join(bad)}: choose among "
                f"{', '.join(sorted(allowed))}"
            )
        return v


class JobsConfig(_Strict):
    default_max_runtime: float = 86400.0
    max_max_runtime: float = 30 * 86400.0
    grace: float = 10.0
    retry_backoff: RetryBackoff = RetryBackoff()
    max_retries: int = Field(default=100, ge=0, le=10_000)

    _v = field_validator("default_max_runtime", "max_max_runtime", "grace", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


def _byte_cap(v: Any) -> int:
    """A byte cap: bare numbers are bytes, units are exact (``100Mi`` = 104857600)."""
    size = parse_size_bytes(v)
    if size < 1:
        raise ValueError(f"must be a positive size in bytes or with units (100Mi), got {v!r}")
    return size


class UploadsConfig(_Strict):
    max_packed: int = 100 * 1024 * 1024  # bytes
    max_unpacked: int = 1024 * 1024 * 1024  # bytes
    max_files: int = Field(default=100_000, ge=1)
    #: Upload quotas (bytes of stored archives): what one user's uploads may hold, and
    #: what all uploads together may hold. Unreferenced uploads are removed by
    #: retention (``retention:``), which frees quota.
    max_per_user: int = 5 * 1024**3
    max_total: int = 50 * 1024**3

    _size = field_validator(
        "max_packed", "max_unpacked", "max_per_user", "max_total", mode="before"
    )(
        classmethod(lambda cls, v: _byte_cap(v))
    )


class ApiConfig(_Strict):
    #: Largest request body in bytes, except code uploads (uploads.max_packed).
    max_body: int = 1024 * 1024

    _size = field_validator("max_body", mode="before")(classmethod(lambda cls, v: _byte_cap(v)))


ISOLATION_MODES = ("auto", "users", "off")


def _default_isolation_mode() -> str:
    return os.environ.get("PLINTH_ISOLATION") or "auto"


class IsolationConfig(_Strict):
    """``isolation:``: whether replicas run as unprivileged OS users (docs/security.md).

    ``mode``: ``users`` (one system user per quota group, created on demand; needs a
    root server), ``off`` (replicas run as the server's user: single-user mode) or
    ``auto`` (``users`` when the server runs as root). Default: ``$PLINTH_ISOLATION``,
    else ``auto``. ``run_root``: the directory holding each workload's working
    directory when isolated (it must be traversable by every user: not under a 0700
    home); ``user_prefix``: the OS user names' prefix."""

    mode: str = Field(default_factory=_default_isolation_mode)
    run_root: str = "/var/lib/plinth/run"
    user_prefix: str = Field(default="plinth-", pattern=r"^[a-z_][a-z0-9_-]{0,11}$")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, v: str) -> str:
        if v not in ISOLATION_MODES:
            raise ValueError(f"must be one of {', '.join(ISOLATION_MODES)}, got {v!r}")
        return v

    @field_validator("run_root")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not os.path.isabs(v):
            raise ValueError(f"must be an absolute path, got {v!r}")
        return v

    def isolates(self) -> bool:
        """Whether replicas run as other OS users than the server (resolves ``auto``)."""
        if self.mode == "auto":
            return os.geteuid() == 0
        return self.mode == "users"


class LogsConfig(_Strict):
    """``logs:``: ``max_per_replica`` bounds each replica attempt's log (bytes or
    ``64Mi``): past it the log keeps its first quarter and its latest part, with a line
    saying how many bytes were dropped between them."""

    max_per_replica: int = 64 * 1024 * 1024

    _size = field_validator("max_per_replica", mode="before")(
        classmethod(lambda cls, v: _byte_cap(v))
    )


class RetentionConfig(_Strict):
    """``retention:``: how long what finished is kept before the sweep removes it.

    ``workloads``: working directories and logs of workloads finished this long ago
    (their records stay in the database); ``uploads``: uploaded archives (and their
    extracted code) that no live workload uses and that nothing used for this long;
    ``sweep_interval``: how often the server sweeps (``plinth admin gc`` sweeps now)."""

    workloads: float = 7 * 86400.0
    uploads: float = 30 * 86400.0
    sweep_interval: float = 3600.0

    _v = field_validator("workloads", "uploads", "sweep_interval", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


EXECUTOR_NICE_DEFAULT = 5


class RayExecutorConfig(_Strict):
    """``executor: {kind: ray, ...}``: the Ray cluster to run replicas on
    (docs/scale-out.md). Durations in seconds or with units."""

    address: str = Field(default="auto", min_length=1)
    namespace: str = Field(default="plinth", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    #: The server's IP as the cluster sees it; ``127.0.0.1`` for a cluster on loopback.
    node_ip_address: str | None = None
    agent_root: str | None = None
    placement_timeout: float = 60.0

    _v = field_validator("placement_timeout", mode="before")(
        classmethod(lambda cls, v: _duration(v))
    )


#: Options of each executor kind given as a mapping (``executor: {kind: ..., ...}``).
_EXECUTOR_OPTIONS: dict[str, type[_Strict] | None] = {"local": None, "ray": RayExecutorConfig}


class NotebookPolicy(_Strict):
    """Defaults and caps of notebook sessions (seconds); a group's entry in
    ``notebooks.groups`` overrides the keys it sets."""

    idle_timeout: float | None = None
    gpu_idle_timeout: float | None = None
    max_lifetime: float | None = None
    max_idle_timeout: float | None = None
    lifetime_cap: float | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> Any:
        if v is None:
            return None
        d = _duration(v)
        if d <= 0:
            raise ValueError(f"must be a positive duration, got {v!r}")
        return d


class NotebooksConfig(_Strict):
    """``notebooks:``: idle timeouts, lifetimes and their caps (docs/notebooks.md)."""

    idle_timeout: float = 3600.0
    gpu_idle_timeout: float | None = 1800.0
    max_lifetime: float = 8 * 3600.0
    max_idle_timeout: float = 86400.0
    lifetime_cap: float = 7 * 86400.0
    groups: dict[str, NotebookPolicy] = Field(default_factory=dict)
    check_interval: float = Field(default=10.0)
    start_timeout: float = 120.0
    warn_fraction: float = Field(default=0.8, gt=0, lt=1)
    #: More options for ``jupyter lab`` (e.g. ``--ServerApp.max_body_size=...``).
    jupyter_args: list[str] = Field(default_factory=list, max_length=64)

    _v = field_validator(
        "idle_timeout", "max_lifetime", "max_idle_timeout", "lifetime_cap", "check_interval",
        "start_timeout", mode="before",
    )(classmethod(lambda cls, v: _duration(v)))
    _g = field_validator("gpu_idle_timeout", mode="before")(
        classmethod(lambda cls, v: None if v is None else _duration(v))
    )

    @field_validator("check_interval", "start_timeout", "idle_timeout", "max_lifetime")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"must be a positive duration, got {v:g}")
        return v

    def policy(self, group: str) -> NotebookPolicy:
        """The group's effective policy: its overrides on top of the defaults."""
        base = NotebookPolicy(
            idle_timeout=self.idle_timeout, gpu_idle_timeout=self.gpu_idle_timeout,
            max_lifetime=self.max_lifetime, max_idle_timeout=self.max_idle_timeout,
            lifetime_cap=self.lifetime_cap,
        )  # fmt: skip
        over = self.groups.get(group)
        if over is None:
            return base
        return base.model_copy(update=over.model_dump(exclude_none=True))


class ServerConfig(_Strict):
    """The whole server configuration; see the module docstring for the YAML shape."""

    nodes: list[NodeConfig] | None = None
    executor: str = "local"
    #: Niceness increment (0-19) of every replica (its supervisor and command) under the
    #: local executor, so that the control plane stays responsive while its own machine
    #: is busy starting and running work. See docs/configuration.md for the default.
    executor_nice: int = Field(default=EXECUTOR_NICE_DEFAULT, ge=0, le=19)
    scheduler: SchedulerConfig = SchedulerConfig()
    jobs: JobsConfig = JobsConfig()
    uploads: UploadsConfig = UploadsConfig()
    api: ApiConfig = ApiConfig()
    code: CodeConfig = CodeConfig()
    isolation: IsolationConfig = Field(default_factory=IsolationConfig)
    logs: LogsConfig = LogsConfig()
    retention: RetentionConfig = RetentionConfig()
    notebooks: NotebooksConfig = NotebooksConfig()
    url: str | None = None
    #: The options of ``executor: {kind: ray, ...}`` (None for the local executor).
    ray: RayExecutorConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _executor_mapping(cls, data: Any) -> Any:
        """``executor: {kind: K, opt: v}`` -> ``executor: K`` plus the kind's options;
        a plain ``executor: K`` stays as it is."""
        if not isinstance(data, dict) or not isinstance(data.get("executor"), dict):
            return data
        if "ray" in data:
            raise ValueError("give the Ray options inside `executor: {kind: ray, ...}`")
        options = dict(data["executor"])
        kind = options.pop("kind", None)
        if kind not in _EXECUTOR_OPTIONS:
            raise ValueError(
                f"executor.kind must be one of {', '.join(sorted(_EXECUTOR_OPTIONS))}, "
                f"got {kind!r}"
            )
        model = _EXECUTOR_OPTIONS[kind]
        if model is None and options:
            raise ValueError(
                f"executor {kind!r} takes no options here, got {', '.join(sorted(options))}"
            )
        out = {**data, "executor": kind}
        if model is not None:
            out[kind] = options
        return out

    @model_validator(mode="after")
    def _ray_needs_options(self) -> ServerConfig:
        if self.executor == "ray" and self.nodes is not None:
            raise ValueError(
                "the ray executor takes its nodes from the Ray cluster: remove `nodes:`"
            )
        return self

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, v: list[NodeConfig] | None) -> list[NodeConfig] | None:
        if v is not None:
            if not v:
                raise ValueError("nodes must list at least one node (or be left out)")
            names = [n.name for n in v]
            if len(set(names)) != len(names):
                raise ValueError(f"node names must be unique, got {names}")
        return v


def load_config(path: str | os.PathLike[str] | None = None) -> ServerConfig:
    """Read the YAML at `path` (or ``$PLINTH_CONFIG``); no file at all gives the defaults.

    Raises ConfigError naming the offending key when the file is unreadable or invalid.
    """
    path = path or os.environ.get("PLINTH_CONFIG") or None
    if path is None:
        return ServerConfig()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must be a mapping of keys (nodes:, jobs:, ...)")
    try:
        return ServerConfig.model_validate(raw)
    except ValidationError as e:
        msgs = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid config file {p}: {msgs}") from e


def plinth_home() -> Path:
    """PLINTH_HOME (default ``~/.plinth``), created (mode 0700) if missing."""
    home = Path(os.environ.get("PLINTH_HOME") or Path.home() / ".plinth").expanduser()
    make_private_dir(home)
    return home


def secure_home(home: Path) -> Path:
    """Make the server's files private, whatever the umask or an existing home's mode.

    Sets this process's umask to 077 (every file and directory the server creates
    from now on is owner-only: the database, logs, uploads, tokens; replicas'
    working directories get their modes set explicitly), creates `home` 0700, and
    narrows an existing home to 0700 (e.g. one made 0755 by hand): nothing under it
    is then reachable by other users. Returns `home`.
    """
    os.umask(0o077)
    make_private_dir(home)
    st = home.stat()
    if st.st_mode & 0o077:
        os.chmod(home, 0o700)
        _log.warning(
            "PLINTH_HOME %s was readable by other users (mode %o); narrowed it to 0700",
            home, st.st_mode & 0o777,
        )  # fmt: skip
    return home


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) if missing; the directory itself gets mode
    0700 (owner only: it holds the database, logs, code and admin.token). An existing
    directory is left as its owner set it (:func:`secure_home` narrows the home)."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return  # created concurrently; leave it
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def database_url(home: Path) -> str:
    """PLINTH_DATABASE_URL, else SQLite at ``home/plinth.db``."""
    return os.environ.get("PLINTH_DATABASE_URL") or f"sqlite:///{home / 'plinth.db'}"
