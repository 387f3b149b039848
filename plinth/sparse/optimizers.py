"""Sparse optimizers applied inside an embedding table, one row at a time.

Each optimizer is a compiled function ``update(w, st, g, hp)`` over one row: ``w`` the row's
values (float32, length ``dim``, updated in place), ``st`` its optimizer state (float32,
length ``state_width(kind, dim)``, updated in place), ``g`` the row's gradient summed over
the batch, ``hp`` the hyperparameters from :func:`hyperparameters`. The table calls them
only for rows that received a gradient ("lazy" updates): a row's state advances only when
the row is pushed.

State layout per row (float32):

- SGD: none.
- Adagrad: ``acc[dim]``.
- FTRL-proximal: ``z[dim], n[dim]``.
- Adam: ``m[dim], v[dim], t`` — ``t`` is the row's own step count (exact up to 2**24
  updates of that row), so a row pushed at every step follows ``torch.optim.Adam``.

Scalars that torch keeps in Python floats (Adam's bias corrections) are float64 here too;
element-wise math is float32 like torch's float32 parameters.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from plinth.sparse.config import OptimizerConfig, OptimizerKind

__all__ = [
    "KIND_CODE",
    "hyperparameters",
    "initial_state",
    "lower_bound_bytes_per_row",
    "state_width",
    "update_row",
]

SGD, ADAGRAD, FTRL, ADAM = 0, 1, 2, 3
KIND_CODE = {OptimizerKind.SGD: SGD, OptimizerKind.ADAGRAD: ADAGRAD, OptimizerKind.FTRL: FTRL,
             OptimizerKind.ADAM: ADAM}


def state_width(kind: OptimizerKind, dim: int) -> int:
    """float32 state elements per row."""
    return {OptimizerKind.SGD: 0, OptimizerKind.ADAGRAD: dim, OptimizerKind.FTRL: 2 * dim,
            OptimizerKind.ADAM: 2 * dim + 1}[kind]


def lower_bound_bytes_per_row(kind: OptimizerKind, dim: int, value_bytes: int = 4) -> int:
    """Bytes of values plus optimizer state for one row: what any table must store."""
    return dim * value_bytes + 4 * state_width(kind, dim)


def hyperparameters(cfg: OptimizerConfig) -> np.ndarray:
    """Pack ``cfg`` into the float64 vector the compiled update reads."""
    hp = np.zeros(8, dtype=np.float64)
    if cfg.kind is OptimizerKind.SGD:
        hp[0] = cfg.lr
    elif cfg.kind is OptimizerKind.ADAGRAD:
        hp[:3] = (cfg.lr, cfg.eps, cfg.initial_accumulator)
    elif cfg.kind is OptimizerKind.FTRL:
        hp[:4] = (cfg.ftrl_alpha, cfg.beta, cfg.l1, cfg.l2)
    else:
        hp[:4] = (cfg.lr, cfg.beta1, cfg.beta2, cfg.eps)
    return hp


def initial_state(cfg: OptimizerConfig, dim: int) -> np.ndarray:
    """The state of a freshly created row (float32, ``state_width`` long)."""
    st = np.zeros(state_width(cfg.kind, dim), dtype=np.float32)
    if cfg.kind is OptimizerKind.ADAGRAD:
        st[:] = cfg.initial_accumulator
    return st


@numba.njit(cache=True, nogil=True, inline="always")
def _sgd(w: np.ndarray, g: np.ndarray, hp: np.ndarray) -> None:
    lr = np.float32(hp[0])
    for j in range(w.shape[0]):
        w[j] -= lr * g[j]


@numba.njit(cache=True, nogil=True, inline="always")
def _adagrad(w: np.ndarray, st: np.ndarray, g: np.ndarray, hp: np.ndarray) -> None:
    lr = np.float32(hp[0])
    eps = np.float32(hp[1])
    for j in range(w.shape[0]):
        a = st[j] + g[j] * g[j]
        st[j] = a
        w[j] -= lr * g[j] / (np.sqrt(a) + eps)


@numba.njit(cache=True, nogil=True, inline="always")
def _ftrl(w: np.ndarray, st: np.ndarray, g: np.ndarray, hp: np.ndarray) -> None:
    # McMahan et al. 2013, Algorithm 1, per coordinate i:
    #   sigma = (sqrt(n + g^2) - sqrt(n)) / alpha;  z += g - sigma * w;  n += g^2
    #   w = 0 if |z| <= l1 else -(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)
    d = w.shape[0]
    alpha = np.float32(hp[0])
    beta = np.float32(hp[1])
    l1 = np.float32(hp[2])
    l2 = np.float32(hp[3])
    for j in range(d):
        n_old = st[d + j]
        n_new = n_old + g[j] * g[j]
        sigma = (np.sqrt(n_new) - np.sqrt(n_old)) / alpha
        z = st[j] + g[j] - sigma * w[j]
        st[j] = z
        st[d + j] = n_new
        if abs(z) <= l1:
            w[j] = np.float32(0.0)
        else:
            sz = np.float32(1.0) if z > 0 else np.float32(-1.0)
            w[j] = -(z - sz * l1) / ((beta + np.sqrt(n_new)) / alpha + l2)


@numba.njit(cache=True, nogil=True, inline="always")
def _adam(w: np.ndarray, st: np.ndarray, g: np.ndarray, hp: np.ndarray) -> None:
    d = w.shape[0]
    lr = hp[0]
    b1 = hp[1]
    b2 = hp[2]
    eps = np.float32(hp[3])
    t = st[2 * d] + np.float32(1.0)
    st[2 * d] = t
    bc1 = 1.0 - b1 ** np.float64(t)
    bc2_sqrt = math.sqrt(1.0 - b2 ** np.float64(t))
    step_size = np.float32(lr / bc1)
    inv_bc2 = np.float32(bc2_sqrt)
    fb1 = np.float32(b1)
    fb2 = np.float32(b2)
    one = np.float32(1.0)
    for j in range(d):
        m = st[j] * fb1 + (one - fb1) * g[j]
        v = st[d + j] * fb2 + (one - fb2) * g[j] * g[j]
        st[j] = m
        st[d + j] = v
        w[j] -= step_size * m / (np.sqrt(v) / inv_bc2 + eps)


@numba.njit(cache=True, nogil=True)
def update_row(kind: int, w: np.ndarray, st: np.ndarray, g: np.ndarray, hp: np.ndarray) -> None:
    """Apply optimizer ``kind`` (a ``KIND_CODE`` value) to one row in place."""
    if kind == SGD:
        _sgd(w, g, hp)
    elif kind == ADAGRAD:
        _adagrad(w, st, g, hp)
    elif kind == FTRL:
        _ftrl(w, st, g, hp)
    else:
        _adam(w, st, g, hp)
