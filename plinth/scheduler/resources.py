"""Resource vectors: cpu (cores, fractions allowed), memory (MiB), gpu (whole devices).

`Resources` is THE resource value of Plinth: the scheduler, the services and the
executors' capacities all speak it, and "fits" is written once (:meth:`fits_in`)
with one tolerance (:data:`CPU_EPS`). It converts to and from the stored/JSON form
``{"cpu", "memory", "gpu"}`` (:meth:`to_dict`, :meth:`from_dict`).

Hot loops (placement, quota checks) work on plain ``(cpu, memory, gpu)`` tuples
or numpy rows from :meth:`Resources.as_tuple` instead, because attribute access on
dataclasses costs more than tuple indexing in CPython; they use the same
:data:`CPU_EPS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Names of the resource dimensions, in tuple order.
RESOURCE_NAMES: tuple[str, str, str] = ("cpu", "memory", "gpu")

#: The one tolerance of resource comparisons: fractional cores are summed many times,
#: so 0.1 + 0.2 must still "fit" in 0.3. Memory (MiB) and GPUs are whole numbers.
CPU_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Resources:
    """A vector of resources. ``cpu`` in cores, ``memory`` in MiB, ``gpu`` in devices."""

    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory, self.gpu + other.gpu)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.memory - other.memory, self.gpu - other.gpu)

    def __mul__(self, k: int) -> Resources:
        return Resources(self.cpu * k, self.memory * k, self.gpu * k)

    __rmul__ = __mul__

    def fits_in(self, limit: Resources) -> bool:
        """True when every dimension is at most ``limit``'s."""
        return (
            self.cpu <= limit.cpu + CPU_EPS
            and self.memory <= limit.memory
            and self.gpu <= limit.gpu
        )

    def exceeds(self, limit: Resources) -> tuple[str, ...]:
        """Names of the dimensions in which this vector is above ``limit``."""
        out = []
        if self.cpu > limit.cpu + CPU_EPS:
            out.append("cpu")
        if self.memory > limit.memory:
            out.append("memory")
        if self.gpu > limit.gpu:
            out.append("gpu")
        return tuple(out)

    def clamp(self) -> Resources:
        """Negative dimensions set to zero."""
        return Resources(max(self.cpu, 0.0), max(self.memory, 0), max(self.gpu, 0))

    def is_zero(self) -> bool:
        return self.cpu <= CPU_EPS and self.memory <= 0 and self.gpu <= 0

    def as_tuple(self) -> tuple[float, float, float]:
        return (float(self.cpu), float(self.memory), float(self.gpu))

    @classmethod
    def from_tuple(cls, t: tuple[float, float, float]) -> Resources:
        return cls(round(t[0], 6), round(t[1]), round(t[2]))

    def get(self, name: str) -> float:
        return getattr(self, name)

    def dominant_share(self, total: Resources) -> float:
        """The largest fraction of `total` this vector takes in any dimension (DRF's
        dominant share); dimensions `total` lacks are ignored. 0.0 for an empty total."""
        shares = [
            mine / whole
            for mine, whole in zip(self.as_tuple(), total.as_tuple(), strict=True)
            if whole > 0
        ]
        return max(shares, default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """The stored / JSON form: ``{"cpu": float, "memory": int (MiB), "gpu": int}``."""
        return {"cpu": float(self.cpu), "memory": int(self.memory), "gpu": int(self.gpu)}

    @classmethod
    def from_dict(cls, q: Mapping[str, Any] | None) -> Resources:
        """From the stored / JSON form; missing dimensions are zero."""
        q = q or {}
        return cls(float(q.get("cpu", 0)), int(q.get("memory", 0)), int(q.get("gpu", 0)))

    def __str__(self) -> str:
        return f"cpu={format_amount('cpu', self.cpu)},memory={format_amount('memory', self.memory)}" + (
            f",gpu={self.gpu}" if self.gpu else ""
        )


ZERO = Resources()


def over_limit(demand: Resources, limit: Mapping[str, Any], extra: Resources = ZERO) -> list[str]:
    """Human text (``"cpu 4 > 2"``) for each dimension in which ``demand`` is above a
    partial limit — a cap in its stored form, where a missing dimension is uncapped —
    raised by ``extra`` (e.g. expansions that are still running)."""
    return [
        f"{k} {format_amount(k, demand.get(k))} > {format_amount(k, float(limit[k]) + extra.get(k))}"
        for k in RESOURCE_NAMES
        if k in limit and demand.get(k) > float(limit[k]) + extra.get(k) + (CPU_EPS if k == "cpu" else 0)
    ]


def format_amount(name: str, value: float) -> str:
    """Human text for one dimension: ``4``, ``2.5``, ``8Gi``, ``512Mi``."""
    if name == "memory":
        v = round(value)
        if v and v % 1024 == 0:
            return f"{v // 1024}Gi"
        if abs(v) >= 1024:
            return f"{v / 1024:.1f}Gi"
        return f"{v}Mi"
    if name == "cpu":
        return f"{value:g}" if abs(value - round(value)) > 1e-9 else str(round(value))
    return str(round(value))
