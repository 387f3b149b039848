"""Compiled 64-bit hashing helpers shared by the table's kernels.

``mix64`` is the splitmix64 finalizer (a bijection on 64-bit words). ``slot_of`` maps a hash
to ``[0, n)`` by multiply-shift ("fastrange", Lemire 2016) instead of a modulo, so table
capacities need not be powers of two and can grow by 1.5x. ``normal_init`` is the table's
initializer: a standard normal that is a pure function of (seed, id, element), the
(tabulated) normal quantile of hashed uniforms, so a row that does not exist reads the same value every time.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["mix64", "ndtri", "normal_init", "slot_of", "uniform01"]


@numba.njit(cache=True, inline="always")
def mix64(x: np.uint64) -> np.uint64:
    """The splitmix64 finalizer; the one implementation of it (callable from Python on a
    ``np.uint64`` scalar too). uint64 arithmetic wraps modulo 2**64 in numba as in C."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def slot_of(h: np.uint64, n: np.int64) -> np.int64:
    """Map hash ``h`` to ``[0, n)`` for ``n < 2**32`` using its high 32 bits."""
    return np.int64(((h >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@numba.njit(cache=True, inline="always")
def uniform01(h: np.uint64) -> float:
    """A float64 in (0, 1] from the top 53 bits of ``h``."""
    return (np.float64(h >> np.uint64(11)) + 1.0) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def ndtri(p: float) -> float:
    """Standard normal quantile of ``p`` in (0, 1): Wichura's AS241 PPND7 (relative error
    about 1e-7, ample for an initializer). A rational function in the central 85%, a log and
    a square root only in the tails, so it is several times cheaper than Box-Muller."""
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * (((59.10937472 * r + 159.29113202) * r + 50.434271938) * r
                    + 3.3871327179) / (((67.1875636 * r + 78.757757664) * r
                                        + 17.895169469) * r + 1.0)
    r = p if q < 0.0 else 1.0 - p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r -= 1.6
        v = (((0.17023821103 * r + 1.3067284816) * r + 2.75681539) * r
             + 1.4234372777) / ((0.12021132975 * r + 0.7370016425) * r + 1.0)
    else:
        r -= 5.0
        v = (((0.017337203997 * r + 0.42868294337) * r + 3.081226386) * r
             + 6.657905115) / ((0.012258202635 * r + 0.24197894225) * r + 1.0)
    return -v if q < 0.0 else v


_QUANTILE_BINS = 4096


def _quantile_table() -> np.ndarray:
    t = np.zeros(_QUANTILE_BINS + 1, dtype=np.float64)
    for i in range(1, _QUANTILE_BINS):
        t[i] = ndtri(i / _QUANTILE_BINS)
    return t


# Normal quantiles at i / 4096. A global array is a constant to numba (compiled in).
_QTABLE = _quantile_table()


@numba.njit(cache=True, inline="always")
def _fast_ndtri(u: float) -> float:
    # Linear interpolation in the quantile table (error below 0.01 everywhere, about 1e-6
    # in the bulk); the outermost bins, where the quantile diverges, use ndtri itself.
    x = u * _QUANTILE_BINS
    i = np.int64(x)
    if i <= 0 or i >= _QUANTILE_BINS - 1:
        return ndtri(u)
    return _QTABLE[i] + (x - i) * (_QTABLE[i + 1] - _QTABLE[i])


@numba.njit(cache=True, nogil=True)
def normal_init(seed: np.uint64, key: np.int64, std: np.float32, out: np.ndarray) -> None:
    """Fill ``out`` (float32) with ``std * N(0, 1)`` drawn deterministically from (seed, key):
    element j is the normal quantile of the uniform ``(b + 0.5) / 2**32``, ``b`` being 32
    bits of ``mix64(mix64(key ^ seed) + j // 2)``. The quantile comes from a 4096-bin table
    with linear interpolation (a few ns per element; ``ndtri`` in the outermost bins)."""
    base = mix64(np.uint64(key) ^ seed)
    d = out.shape[0]
    scale = 1.0 / 4294967296.0
    for p in range((d + 1) // 2):
        h = mix64(base + np.uint64(p))
        out[2 * p] = np.float32(_fast_ndtri((np.float64(h >> np.uint64(32)) + 0.5) * scale)) * std
        if 2 * p + 1 < d:
            u2 = (np.float64(h & np.uint64(0xFFFFFFFF)) + 0.5) * scale
            out[2 * p + 1] = np.float32(_fast_ndtri(u2)) * std
