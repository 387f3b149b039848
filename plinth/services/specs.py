"""Validated inputs: job specs, quantities, group and user requests (Pydantic, no I/O).

Every model forbids unknown keys so a typo is reported ("roles.worker.replica: Extra
inputs are not permitted") rather than ignored, and every number is bounded so no
input can overflow a database column. Memory accepts MiB or strings with units and
is normalised to MiB; durations accept seconds or ``90s``/``30m``/``2h``/``1d`` and are
normalised to seconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from plinth.services.units import SIZE_PATTERN, parse_duration_s, parse_memory_mib

__all__ = [
    "NAME_PATTERN",
    "ROLE_PATTERN",
    "CodeFile",
    "CodeGit",
    "ExpansionCreate",
    "GroupCreate",
    "GroupPatch",
    "JobSpec",
    "Quantities",
    "ReservationCreate",
    "Resources",
    "RoleSpec",
    "UserCreate",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ROLE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ENV_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_REPLICAS_PER_ROLE = 256
MAX_ROLES = 16

MemoryMiB = Annotated[
    int,
    BeforeValidator(parse_memory_mib),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 2**40},
                {"type": "string", "pattern": SIZE_PATTERN},
            ],
            "description": "MiB, or a string with a unit: 512Mi, 4Gi, 1G",
        },
        mode="validation",
    ),
]
DurationS = Annotated[
    float,
    BeforeValidator(parse_duration_s),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": 315360000},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(s|m|h|d)?$"},
            ],
            "description": "seconds, or a string with a unit: 90s, 30m, 2h, 1d",
        },
        mode="validation",
    ),
]
Cpu = Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False, description="cores")]
Gpu = Annotated[int, Field(ge=0, le=1024, description="whole devices")]
SafeStr = Annotated[str, Field(max_length=65536, pattern=r"^[^\x00]*$")]


#: Most levels of nested objects/arrays in a job's ``params`` (deeper is refused: 422).
MAX_PARAMS_DEPTH = 32
#: Most bytes (as JSON) of a job's params, env and commands together: they are passed
#: in each replica's environment and argv, and Linux refuses one string over 128 KiB.
MAX_ARGS_BYTES = 64 * 1024


def json_depth(value: Any) -> int:
    """Levels of nested dicts/lists in `value` (a scalar is 0, ``{}`` is 1); iterative,
    so a hostile depth cannot exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        d += 1
        deepest = max(deepest, d)
        if deepest > MAX_PARAMS_DEPTH + 1:
            return deepest  # deep enough to refuse; no need to walk the rest
        stack.extend((x, d) for x in v)
    return deepest


def url_has_credentials(url: str) -> bool:
    """Whether a git URL carries a secret in its userinfo: any userinfo of an
    http(s)/ftp(s) URL (tokens are often given as the user name), a password in any
    other scheme. ``ssh://git@host/...`` and scp-like ``git@host:path`` are fine."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return False
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" not in authority:
        return False
    userinfo = authority.rsplit("@", 1)[0]
    return scheme.lower() in ("http", "https", "ftp", "ftps") or ":" in userinfo


def redact_url(url: str) -> str:
    """`url` with a secret-bearing userinfo replaced by ``***`` (see
    :func:`url_has_credentials`); for records stored before such URLs were refused."""
    if not url_has_credentials(url):
        return url
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        # Pydantic's own message ("Extra inputs are not permitted") does not say what is.
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                raise ValueError(
                    f"unknown field(s) {', '.join(map(repr, unknown))}; "
                    f"allowed: {', '.join(cls.model_fields)}"
                )
        return data


class Quantities(_Strict):
    """An amount of each resource (a quota, cap or limit). Missing resources are 0."""

    cpu: Cpu = 0.0
    memory: MemoryMiB = 0
    gpu: Gpu = 0


#: The smallest CPU share (cores) and memory (MiB) a replica may ask for. Below the
#: grain a replica would hold (almost) nothing against its quota and node capacity, so
#: that any number of them would fit: zero and 1e-300 are refused, not rounded.
CPU_GRAIN = 0.01
MEMORY_GRAIN_MIB = 1


class Resources(_Strict):
    """Per-replica resources; defaults: 1 core, 512 MiB, no GPU.

    cpu >= CPU_GRAIN cores and memory >= MEMORY_GRAIN_MIB MiB, both finite."""

    cpu: Cpu = 1.0
    memory: MemoryMiB = 512
    gpu: Annotated[int, Field(ge=0, le=64, description="whole devices")] = 0

    @field_validator("cpu")
    @classmethod
    def _cpu_grain(cls, v: float) -> float:
        if v < CPU_GRAIN:
            raise ValueError(
                f"a replica needs at least {CPU_GRAIN} cores (the CPU grain), got {v!r}: "
                "zero or tinier shares would not count against quotas or capacity"
            )
        return v

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_grain(cls, v: Any) -> Any:
        # Checked on the number given: a bare number is MiB and parsing would round
        # 1e-300 up to the grain; 0 (or "0Mi") is below it too.
        mib = v if isinstance(v, int | float) and not isinstance(v, bool) else None
        if mib is None and isinstance(v, str):
            mib = parse_memory_mib(v)
        if mib is not None and mib < MEMORY_GRAIN_MIB:  # NaN is refused by the parser
            raise ValueError(
                f"a replica needs at least {MEMORY_GRAIN_MIB} MiB of memory (the memory "
                f"grain), got {v!r}: zero would not count against quotas or capacity"
            )
        return v


class RoleSpec(_Strict):
    """One role of a workload: its replicas run `command` with `resources` each."""

    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS_PER_ROLE)
    resources: Resources = Resources()
    command: list[SafeStr] = Field(min_length=1, max_length=4096)
    env: dict[Annotated[str, Field(pattern=ENV_KEY_PATTERN)], SafeStr] = Field(
        default_factory=dict, max_length=512
    )

    @field_validator("command")
    @classmethod
    def _program(cls, v: list[str]) -> list[str]:
        if not v[0]:
            raise ValueError("command[0] (the program) must not be empty")
        return v


class CodeFile(_Strict):
    """Code from an uploaded archive: the sha256 that POST /api/v1/files returned."""

    file: str = Field(pattern=SHA256_PATTERN)


class CodeGit(_Strict):
    """Code from a git repository (URL or local path) at a branch, tag or commit."""

    git: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00\s-][^\x00]*$")
    ref: str = Field(
        default="HEAD", min_length=1, max_length=255, pattern=r"^[^\x00\s-][^\x00\s]*$"
    )

    @field_validator("git")
    @classmethod
    def _no_credentials(cls, v: str) -> str:
        # The URL is stored with the job, shown to its group and needed again at launch
        # (the checkout), so a secret in it would leak; refuse it (without echoing it).
        if url_has_credentials(v):
            raise ValueError(
                "the URL contains credentials (user:password@ or a token before '@'); "
                "do not put secrets in it: it is stored and shown with the job. Give the "
                "server's user a git credential helper or an SSH key instead "
                "(see docs/api.md, code)"
            )
        return v


class JobSpec(_Strict):
    """A job as submitted. See docs/api.md for the meaning of each field."""

    name: str = Field(pattern=NAME_PATTERN)
    group: str | None = Field(default=None, pattern=NAME_PATTERN)
    max_runtime: DurationS | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    code: CodeFile | CodeGit | None = None
    roles: dict[Annotated[str, Field(pattern=ROLE_PATTERN)], RoleSpec] = Field(
        min_length=1, max_length=MAX_ROLES
    )
    retries: int = Field(default=0, ge=0, le=10_000)
    priority: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="priority class (server configuration: low, normal, high by default)",
    )

    @field_validator("params")
    @classmethod
    def _shallow(cls, v: dict[str, Any]) -> dict[str, Any]:
        depth = json_depth(v)
        if depth > MAX_PARAMS_DEPTH:
            raise ValueError(
                f"nested {depth} levels deep; at most {MAX_PARAMS_DEPTH} levels of "
                "objects/arrays are allowed"
            )
        return v

    @model_validator(mode="after")
    def _storable(self) -> JobSpec:
        # JSON parsing lets through NaN/Infinity and lone surrogates; neither can be stored
        # or returned as JSON, so refuse them here with a message rather than fail later.
        try:
            json.dumps(self.params, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeEncodeError) as e:
            raise ValueError(
                f"params must be plain JSON (finite numbers, valid Unicode text): {e}"
            ) from None
        try:
            json.dumps([r.model_dump() for r in self.roles.values()], ensure_ascii=False).encode()
            if isinstance(self.code, CodeGit):
                (self.code.git + self.code.ref).encode()
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
        size = len(json.dumps(self.params, ensure_ascii=False).encode()) + sum(
            len(json.dumps([r.command, r.env], ensure_ascii=False).encode())
            for r in self.roles.values()
        )
        if size > MAX_ARGS_BYTES:
            raise ValueError(
                f"params, env and command together are {size} bytes as JSON; at most "
                f"{MAX_ARGS_BYTES} are allowed (they reach each replica through its command "
                "line and environment, which the OS limits); put large inputs in the code "
                "or a file the job reads"
            )
        return self

    def total_replicas(self) -> int:
        return sum(r.replicas for r in self.roles.values())


MaxWorkloads = Annotated[int, Field(ge=1, le=1_000_000)]


class GroupCreate(_Strict):
    """A quota group. ``borrow_limit``/``lend_limit`` null: unlimited / lends everything.
    Admin caps (null: none): ``max_job`` (largest total resources of one job),
    ``max_runtime`` (longest max_runtime), ``max_workloads_per_user`` (live workloads)."""

    name: str = Field(pattern=NAME_PATTERN)
    quota: Quantities = Quantities()
    borrow_limit: Quantities | None = None
    lend_limit: Quantities | None = None
    max_job: Quantities | None = None
    max_runtime: DurationS | None = None
    max_workloads_per_user: MaxWorkloads | None = None


class GroupPatch(_Strict):
    """The fields to change; null clears a limit or cap."""

    quota: Quantities | None = None
    borrow_limit: Quantities | None = None
    lend_limit: Quantities | None = None
    max_job: Quantities | None = None
    max_runtime: DurationS | None = None
    max_workloads_per_user: MaxWorkloads | None = None


Reason = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\x00]*$")]


class _Window(_Strict):
    """For exactly one of a group or a user, during ``[start, end)`` (ISO-8601; naive
    times are UTC; ``start`` defaults to now)."""

    group: str | None = Field(default=None, pattern=NAME_PATTERN)
    user: str | None = Field(default=None, pattern=NAME_PATTERN)
    start: datetime | None = None
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        # Naive times are UTC; comparing naive with aware times would raise.
        if v is None:
            return v
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        try:
            v = v.astimezone(UTC)
            v.timestamp()
        except (OverflowError, ValueError, OSError):
            raise ValueError("time is out of range") from None
        if not 2000 <= v.year <= 9000:
            raise ValueError("time must be between the years 2000 and 9000")
        return v

    @model_validator(mode="after")
    def _one_owner(self) -> _Window:
        if (self.group is None) == (self.user is None):
            raise ValueError("give exactly one of group or user")
        if self.start is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ExpansionCreate(_Window):
    """Extra quota ``add`` for a group or user during the window; ``reason`` is required."""

    add: Quantities
    reason: Reason


class ReservationCreate(_Window):
    """Capacity ``resources`` kept free for a group or user during the window, on
    ``node`` when given (else the scheduler picks one)."""

    resources: Quantities
    node: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    reason: Annotated[str, Field(max_length=1000, pattern=r"^[^\x00]*$")] = ""


class UserCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    group: str = Field(pattern=NAME_PATTERN)
    cap: Quantities | None = None
    admin: bool = False
