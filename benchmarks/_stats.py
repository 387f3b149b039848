"""Statistics shared by the benchmarks (a helper module, not a benchmark).

Imported as ``benchmarks._stats`` (tests, ``python -m``) or as ``_stats`` when a
benchmark runs as a script (``python benchmarks/x.py``: ``benchmarks/`` is then
``sys.path[0]``).
"""

from __future__ import annotations

from collections.abc import Iterable


def percentile(values: Iterable[float], q: float, *, empty: float = float("nan")) -> float:
    """The ``q``-th percentile (``q`` in 0..100) with linear interpolation between ranks.

    The rank is ``(n - 1) * q / 100`` over the sorted values (numpy's default
    ``"linear"`` method): ``q=50`` is the median, ``q=0`` the minimum, ``q=100`` the
    maximum. Returns ``empty`` when there are no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in 0..100, got {q!r}")
    ordered = sorted(values)
    if not ordered:
        return empty
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
