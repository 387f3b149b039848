"""Configuration of a dynamic embedding table: dataclasses with enums, validated on construction.

Every config is a frozen dataclass that checks itself in ``__post_init__`` and raises
``ValueError`` naming the field and what to change, so a bad YAML or keyword argument fails
where it is written rather than deep inside a compiled kernel. Enum fields also accept their
string values (``"adagrad"``, ``"lfu"``) so configs can come straight from YAML or JSON;
``TableConfig.to_dict`` / ``TableConfig.from_dict`` round-trip through plain JSON types.

Units: learning rates are per update; ``ttl_steps`` counts the caller's global steps (see
``EmbeddingTable.advance``); ``ttl_seconds`` is wall-clock seconds.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Admission",
    "Eviction",
    "EvictionPolicy",
    "OptimizerConfig",
    "OptimizerKind",
    "StorageDType",
    "TableConfig",
]


class OptimizerKind(str, enum.Enum):
    """Optimizer applied to a row inside the table when its gradient is pushed."""

    SGD = "sgd"
    ADAGRAD = "adagrad"
    FTRL = "ftrl"
    ADAM = "adam"


class EvictionPolicy(str, enum.Enum):
    """Which rows go first when ``max_rows`` is exceeded: least recently or least frequently
    updated."""

    LRU = "lru"
    LFU = "lfu"


class StorageDType(str, enum.Enum):
    """Element type of stored values. Optimizer state is always float32; math is float32."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"


def _enum(cls: type[enum.Enum], value: Any, where: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{where}: {value!r} is not one of {allowed}") from None


def _positive(value: Any, where: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        need = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{where} must be {need}, got {value!r}")


@dataclass(frozen=True)
class OptimizerConfig:
    """Hyperparameters of the in-table optimizer.

    - ``SGD``: ``w -= lr * g``.
    - ``ADAGRAD``: as ``torch.optim.Adagrad``: ``acc += g*g; w -= lr * g / (sqrt(acc) + eps)``,
      the accumulator starting at ``initial_accumulator``.
    - ``FTRL``: FTRL-proximal (McMahan et al. 2013, Algorithm 1) per coordinate with ``alpha``
      (defaults to ``lr``), ``beta``, ``l1``, ``l2``.
    - ``ADAM``: lazy Adam: only pushed rows move, each with its own step count, so a row
      updated every step matches ``torch.optim.Adam`` exactly.

    ``eps`` defaults to 1e-10 for Adagrad (torch's default) and 1e-8 for Adam.
    """

    kind: OptimizerKind = OptimizerKind.ADAGRAD
    lr: float = 0.01
    eps: float | None = None
    initial_accumulator: float = 0.0
    alpha: float | None = None
    beta: float = 1.0
    l1: float = 0.0
    l2: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _enum(OptimizerKind, self.kind, "optimizer.kind"))
        _positive(self.lr, "optimizer.lr")
        if self.eps is None:
            object.__setattr__(self, "eps", 1e-8 if self.kind is OptimizerKind.ADAM else 1e-10)
        _positive(self.eps, "optimizer.eps")
        _positive(self.initial_accumulator, "optimizer.initial_accumulator", allow_zero=True)
        if self.alpha is not None:
            _positive(self.alpha, "optimizer.alpha")
        _positive(self.beta, "optimizer.beta", allow_zero=True)
        _positive(self.l1, "optimizer.l1", allow_zero=True)
        _positive(self.l2, "optimizer.l2", allow_zero=True)
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise ValueError(f"optimizer.{name} must be in [0, 1), got {v!r}")

    @property
    def ftrl_alpha(self) -> float:
        """FTRL's learning-rate parameter: ``alpha`` when set, else ``lr``."""
        return float(self.lr if self.alpha is None else self.alpha)


@dataclass(frozen=True)
class Admission:
    """When an unseen id earns a row.

    An id gets a row on a training ``pull`` once it has been seen ``min_count`` times (counted
    in a count-min sketch of ``sketch_depth`` x ``sketch_width`` small saturating counters, so
    ids that never earn a row cost no per-id memory) and then passes a ``probability`` draw.
    The draw is a hash of (table seed, id, current step): reruns admit the same ids, and an id
    seen at k distinct steps is admitted with probability ``1 - (1 - p)^k``.
    The count-min sketch overestimates (never underestimates) counts, so an id may be admitted
    slightly early when the sketch is crowded; widen it for very many distinct rare ids.

    ``compete`` (needs an LFU ``max_rows`` cap; TinyLFU's admission filter, Einziger et al.
    2017): once the cap has forced an eviction, an id without a row is admitted only when
    its sketch count exceeds the count at which that eviction cut, and a new row's count
    starts at its sketch count (its sightings so far) rather than 0. A full table then
    keeps the most frequent ids instead of trading trained rows for newcomers that the
    next eviction removes again. The sketch then has 16-bit counters (twice the bytes).
    """

    min_count: int = 1
    probability: float = 1.0
    sketch_width: int = 1 << 18
    sketch_depth: int = 4
    compete: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.min_count, int) or isinstance(self.min_count, bool) or (
            self.min_count < 1
        ):
            raise ValueError(f"admission.min_count must be an integer >= 1, got {self.min_count!r}")
        if self.min_count > 65535:
            raise ValueError(f"admission.min_count must be <= 65535, got {self.min_count}")
        p = self.probability
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not (0.0 < p <= 1.0):
            raise ValueError(f"admission.probability must be in (0, 1], got {p!r}")
        if not isinstance(self.sketch_width, int) or self.sketch_width < 16:
            raise ValueError(f"admission.sketch_width must be an integer >= 16, got "
                             f"{self.sketch_width!r}")
        if not isinstance(self.sketch_depth, int) or not (1 <= self.sketch_depth <= 8):
            raise ValueError(f"admission.sketch_depth must be an integer in 1..8, got "
                             f"{self.sketch_depth!r}")
        if not isinstance(self.compete, bool):
            raise ValueError(  # noqa: TRY004 - one exception type for all config errors
                f"admission.compete must be true or false, got {self.compete!r}")


@dataclass(frozen=True)
class Eviction:
    """When rows go away.

    - ``ttl_steps``: a row not updated (pushed, or created) for more than this many steps of
      ``EmbeddingTable.advance`` is removed by ``evict()``.
    - ``ttl_seconds``: likewise in wall-clock seconds of ``advance(now=...)``.
    - ``max_rows``: a cap. When a training pull would exceed ``(1 + slack) * max_rows``
      rows, the table evicts, by ``policy``, down to ``(1 - slack) * max_rows`` first —
      amortised, so the table holds up to ``(1 + slack) * max_rows`` rows, never more. ``LRU`` removes the rows with the
      oldest last-update step, ``LFU`` the rows with the fewest pushed occurrences (ties and
      the boundary bucket are resolved approximately, see ``_kernels.select_victims``).
    """

    ttl_steps: int | None = None
    ttl_seconds: float | None = None
    max_rows: int | None = None
    policy: EvictionPolicy = EvictionPolicy.LRU
    slack: float = 1.0 / 32.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", _enum(EvictionPolicy, self.policy, "eviction.policy"))
        if self.ttl_steps is not None and (
            not isinstance(self.ttl_steps, int) or isinstance(self.ttl_steps, bool)
            or self.ttl_steps < 1
        ):
            raise ValueError(f"eviction.ttl_steps must be an integer >= 1 or None, got "
                             f"{self.ttl_steps!r}")
        if self.ttl_seconds is not None:
            _positive(self.ttl_seconds, "eviction.ttl_seconds")
        if self.max_rows is not None and (
            not isinstance(self.max_rows, int) or isinstance(self.max_rows, bool)
            or self.max_rows < 1
        ):
            raise ValueError(f"eviction.max_rows must be an integer >= 1 or None, got "
                             f"{self.max_rows!r}")
        if not (isinstance(self.slack, (int, float)) and 0.0 <= self.slack <= 0.5):
            raise ValueError(f"eviction.slack must be in [0, 0.5], got {self.slack!r}")


@dataclass(frozen=True)
class TableConfig:
    """One dynamic embedding table.

    ``init_std``: a row that does not exist reads as ``normal(seed, id) * init_std`` — a
    deterministic function of (seed, id), so an id that is not admitted always reads the same
    value and takes no memory, and a row created later starts from exactly that value.
    ``zero_init_columns``: that many trailing columns start at exactly 0 instead (a
    first-order weight riding in an embedding row, so a model starts at its bias).
    ``storage_dtype``: ``"float32"`` or ``"float16"`` (values stored in half precision, all
    math in float32; optimizer state stays float32).
    """

    name: str
    dim: int
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    init_std: float = 0.01
    zero_init_columns: int = 0
    admission: Admission = field(default_factory=Admission)
    eviction: Eviction = field(default_factory=Eviction)
    storage_dtype: StorageDType = StorageDType.FLOAT32
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"table name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or not (
            1 <= self.dim <= 4096
        ):
            raise ValueError(f"table {self.name!r}: dim must be an integer in 1..4096, got "
                             f"{self.dim!r}")
        for attr, cls in (("optimizer", OptimizerConfig), ("admission", Admission),
                          ("eviction", Eviction)):
            v = getattr(self, attr)
            if isinstance(v, dict):
                known = {f.name for f in dataclasses.fields(cls)}
                unknown = sorted(set(v) - known)
                if unknown:
                    raise ValueError(f"table {self.name!r}: unknown {attr} keys {unknown}; "
                                     f"known: {sorted(known)}")
                object.__setattr__(self, attr, cls(**v))
            elif not isinstance(v, cls):
                raise ValueError(  # noqa: TRY004 - one exception type for all config errors
                    f"table {self.name!r}: {attr} must be a {cls.__name__} or a dict of its "
                    f"fields, got {type(v).__name__}")
        if self.admission.compete and (self.eviction.max_rows is None
                                       or self.eviction.policy is not EvictionPolicy.LFU):
            raise ValueError(f"table {self.name!r}: admission.compete needs eviction.max_rows "
                             f"and eviction.policy 'lfu' (it compares newcomers with the "
                             f"rows an LFU cap evicts); set both or drop compete")
        _positive(self.init_std, f"table {self.name!r}: init_std", allow_zero=True)
        z = self.zero_init_columns
        if not isinstance(z, int) or isinstance(z, bool) or not 0 <= z <= self.dim:
            raise ValueError(f"table {self.name!r}: zero_init_columns must be an integer in "
                             f"0..dim ({self.dim}), got {z!r}")
        object.__setattr__(self, "storage_dtype",
                           _enum(StorageDType, self.storage_dtype,
                                 f"table {self.name!r}: storage_dtype"))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not (
            0 <= self.seed < 2**63
        ):
            raise ValueError(f"table {self.name!r}: seed must be an integer in [0, 2**63), got "
                             f"{self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their string values)."""

        def plain(v: Any) -> Any:
            if isinstance(v, enum.Enum):
                return v.value
            if dataclasses.is_dataclass(v):
                return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
            return v

        return plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"table config: unknown keys {sorted(unknown)}; known: "
                             f"{sorted(known)}")
        return cls(**d)
