"""Each in-table optimizer against a reference on the same update sequence: torch.optim for
the dense equivalents (every row updated every step), numpy for FTRL-proximal (McMahan et
al. 2013) and for lazy Adam's per-row steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plinth.sparse.config import OptimizerConfig, OptimizerKind, TableConfig
from plinth.sparse.table import EmbeddingTable

DIM = 6
ROWS = 10
STEPS = 25


def _setup(opt: OptimizerConfig, storage: str = "float32") -> tuple[EmbeddingTable, np.ndarray]:
    t = EmbeddingTable(TableConfig(name="o", dim=DIM, optimizer=opt, init_std=0.1,
                                   storage_dtype=storage))
    ids = np.arange(100, 100 + ROWS, dtype=np.int64)
    t.pull(ids)
    return t, ids


def _grads(rng: np.random.Generator, n: int = ROWS) -> np.ndarray:
    return rng.normal(size=(n, DIM)).astype(np.float32)


@pytest.mark.parametrize(
    ("opt", "make_torch"),
    [
        (OptimizerConfig(kind=OptimizerKind.SGD, lr=0.05),
         lambda p: torch.optim.SGD([p], lr=0.05)),
        (OptimizerConfig(kind=OptimizerKind.ADAGRAD, lr=0.1),
         lambda p: torch.optim.Adagrad([p], lr=0.1, eps=1e-10)),
        (OptimizerConfig(kind=OptimizerKind.ADAGRAD, lr=0.1, initial_accumulator=0.1),
         lambda p: torch.optim.Adagrad([p], lr=0.1, eps=1e-10, initial_accumulator_value=0.1)),
        (OptimizerConfig(kind=OptimizerKind.ADAM, lr=0.01),
         lambda p: torch.optim.Adam([p], lr=0.01)),
        (OptimizerConfig(kind=OptimizerKind.ADAM, lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6),
         lambda p: torch.optim.Adam([p], lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    ],
    ids=["sgd", "adagrad", "adagrad-acc0", "adam", "adam-betas"],
)
def test_matches_torch_dense_optimizer(opt: OptimizerConfig, make_torch) -> None:
    t, ids = _setup(opt)
    param = torch.nn.Parameter(torch.from_numpy(t.pull(ids, train=False).copy()))
    topt = make_torch(param)
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        # Each row appears twice with split gradients: the table must sum duplicates first.
        g = _grads(rng)
        a = (g * 0.25).astype(np.float32)
        b = (g - a).astype(np.float32)
        t.push(np.concatenate([ids, ids]), np.concatenate([a, b]))
        param.grad = torch.from_numpy(a + b)
        topt.step()
        t.advance()
    np.testing.assert_allclose(t.pull(ids, train=False), param.detach().numpy(),
                               rtol=2e-5, atol=2e-6)


def ftrl_reference(w0: np.ndarray, grads: list[np.ndarray], alpha: float, beta: float,
                   l1: float, l2: float) -> np.ndarray:
    """FTRL-proximal, McMahan et al. 2013 ("Ad click prediction"), Algorithm 1, per
    coordinate, starting from weights ``w0`` with z = n = 0."""
    w = w0.astype(np.float64).copy()
    z = np.zeros_like(w)
    n = np.zeros_like(w)
    for g in grads:
        g = g.astype(np.float64)
        sigma = (np.sqrt(n + g * g) - np.sqrt(n)) / alpha
        z += g - sigma * w
        n += g * g
        w = np.where(np.abs(z) <= l1, 0.0,
                     -(z - np.sign(z) * l1) / ((beta + np.sqrt(n)) / alpha + l2))
    return w


@pytest.mark.parametrize(("l1", "l2"), [(0.0, 0.0), (0.5, 0.1), (3.0, 1.0)])
def test_ftrl_matches_mcmahan_reference(l1: float, l2: float) -> None:
    opt = OptimizerConfig(kind=OptimizerKind.FTRL, alpha=0.1, beta=1.0, l1=l1, l2=l2)
    t, ids = _setup(opt)
    w0 = t.pull(ids, train=False)
    rng = np.random.default_rng(1)
    grads = [_grads(rng) for _ in range(STEPS)]
    for g in grads:
        t.push(ids, g)
    want = ftrl_reference(w0, grads, alpha=0.1, beta=1.0, l1=l1, l2=l2)
    np.testing.assert_allclose(t.pull(ids, train=False), want, rtol=1e-4, atol=1e-5)
    if l1 >= 3.0:  # sums of 25 unit normals rarely exceed 3 in magnitude
        # Strong L1 makes FTRL produce exact zeros: the reason to use it for wide models.
        assert (t.pull(ids, train=False) == 0).mean() > 0.3


def test_ftrl_alpha_defaults_to_lr() -> None:
    assert OptimizerConfig(kind=OptimizerKind.FTRL, lr=0.3).ftrl_alpha == 0.3
    assert OptimizerConfig(kind=OptimizerKind.FTRL, lr=0.3, alpha=0.2).ftrl_alpha == 0.2


def test_lazy_adam_keeps_a_step_count_per_row() -> None:
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    t, ids = _setup(OptimizerConfig(kind=OptimizerKind.ADAM, lr=lr))
    w = t.pull(ids, train=False).astype(np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    steps = np.zeros(ROWS)
    rng = np.random.default_rng(2)
    for _ in range(STEPS):
        sel = np.flatnonzero(rng.random(ROWS) < 0.4)  # rows without a gradient do not move
        if sel.size == 0:
            continue
        g = _grads(rng, sel.size).astype(np.float64)
        t.push(ids[sel], g.astype(np.float32))
        steps[sel] += 1
        m[sel] = b1 * m[sel] + (1 - b1) * g
        v[sel] = b2 * v[sel] + (1 - b2) * g * g
        bc1 = 1 - b1 ** steps[sel, None]
        bc2 = 1 - b2 ** steps[sel, None]
        w[sel] -= lr * (m[sel] / bc1) / (np.sqrt(v[sel] / bc2) + eps)
    np.testing.assert_allclose(t.pull(ids, train=False), w, rtol=1e-4, atol=1e-6)
    sd = t.state_dict()
    # The per-row step is the last state column.
    np.testing.assert_array_equal(sd["optimizer_state"][:, -1],
                                  steps[np.searchsorted(ids, sd["ids"])])


def test_float16_storage_does_math_in_float32() -> None:
    opt = OptimizerConfig(kind=OptimizerKind.ADAGRAD, lr=0.1)
    t16, ids = _setup(opt, storage="float16")
    t32, _ = _setup(opt)
    rng = np.random.default_rng(3)
    for _ in range(10):
        g = _grads(rng)
        t16.push(ids, g)
        t32.push(ids, g)
    got = t16.pull(ids, train=False)
    # Values are float16-rounded after every step; state stays float32.
    np.testing.assert_array_equal(got, got.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(got, t32.pull(ids, train=False), rtol=5e-3, atol=5e-3)
    assert t16.state_dict()["values"].dtype == np.float16
    assert t16.state_dict()["optimizer_state"].dtype == np.float32


def test_ids_without_a_row_are_ignored_by_push() -> None:
    t, ids = _setup(OptimizerConfig(kind=OptimizerKind.SGD, lr=1.0))
    before = t.pull(ids, train=False)
    unknown = np.array([1, 2, 3], dtype=np.int64)
    assert t.push(unknown, np.ones((3, DIM), np.float32)) == 0
    assert len(t) == ROWS
    np.testing.assert_array_equal(t.pull(ids, train=False), before)
