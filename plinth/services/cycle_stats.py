"""Counters of the control loop's scheduling cycles, for ``/metrics``.

The scheduler core times its phases (``Decisions.phases``: snapshot, heads, nominate,
order, process, requeue -- seconds); this keeps a cumulative histogram of each, and the
preemptions applied, counted by the kind of their reason (the text before its first
``:``, e.g. ``reclaim``). Thread-safe: the loop's thread and submit threads record,
scrapes read. Plain numbers: the API layer turns them into Prometheus families.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PHASE_BUCKETS_S", "CycleStats", "PhaseHistogram", "preemption_kind"]

#: Upper bounds (seconds) of the phase histograms' buckets; +Inf is implied.
PHASE_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)  # fmt: skip


def preemption_kind(reason: str) -> str:
    """``"reclaim: group ads needs ..."`` -> ``"reclaim"`` (a small, fixed label set)."""
    kind, sep, _ = reason.partition(":")
    kind = kind.strip()
    return kind if sep and kind.replace("_", "").replace("-", "").isalnum() else "other"


@dataclass
class PhaseHistogram:
    """Counts per bucket (not cumulative; the last is +Inf), their sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(PHASE_BUCKETS_S) + 1))
    total_s: float = 0.0
    n: int = 0

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound, observations <= it), +Inf last."""
        out, running = [], 0
        for bound, c in zip((*PHASE_BUCKETS_S, float("inf")), self.counts, strict=True):
            running += c
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class CycleStats:
    """See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[str, PhaseHistogram] = defaultdict(PhaseHistogram)
        self._preemptions: dict[str, int] = defaultdict(int)

    def record_phases(self, phases: Mapping[str, float]) -> None:
        with self._lock:
            for name, seconds in phases.items():
                h = self._phases[name]
                h.counts[bisect.bisect_left(PHASE_BUCKETS_S, seconds)] += 1
                h.total_s += seconds
                h.n += 1

    def record_preemptions(self, reasons: list[str]) -> None:
        with self._lock:
            for reason in reasons:
                self._preemptions[preemption_kind(reason)] += 1

    def phases(self) -> dict[str, PhaseHistogram]:
        """A copy of every phase's histogram."""
        with self._lock:
            return {
                k: PhaseHistogram(list(v.counts), v.total_s, v.n) for k, v in self._phases.items()
            }

    def preemptions(self) -> dict[str, int]:
        """Preemptions applied so far, by kind of reason."""
        with self._lock:
            return dict(self._preemptions)
