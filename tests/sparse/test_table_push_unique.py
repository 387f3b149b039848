"""``push(ids, grads, unique=True)`` (no batch-local dedup) leaves a table bit-identical to
the default path on distinct ids, for every optimizer and storage type; the finiteness
check that guards both paths matches ``np.isfinite`` without changing anything on refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plinth.sparse import _kernels as K
from plinth.sparse.config import OptimizerConfig, OptimizerKind, TableConfig
from plinth.sparse.jagged import KeyedJaggedTensor
from plinth.sparse.module import FeatureSpec, SparseEmbedding
from plinth.sparse.table import EmbeddingTable, TableInputError

DIM = 5  # odd: rows straddle cache lines and the float count is odd
OPTIMIZERS = {
    "sgd": OptimizerConfig(kind=OptimizerKind.SGD, lr=0.05),
    "adagrad": OptimizerConfig(kind=OptimizerKind.ADAGRAD, lr=0.1, initial_accumulator=0.1),
    "ftrl": OptimizerConfig(kind=OptimizerKind.FTRL, alpha=0.1, beta=1.0, l1=0.5, l2=0.1),
    "adam": OptimizerConfig(kind=OptimizerKind.ADAM, lr=0.01),
}


def _pair(opt: OptimizerConfig, storage: str) -> tuple[EmbeddingTable, EmbeddingTable]:
    # A small initial capacity, so the pushes also run while an incremental rehash is in
    # progress (rows found in the old slot array).
    return tuple(  # type: ignore[return-value]
        EmbeddingTable(
            TableConfig(name="u", dim=DIM, optimizer=opt, init_std=0.1, storage_dtype=storage),
            initial_capacity=64,
        )
        for _ in range(2)
    )


def _assert_same_state(a: EmbeddingTable, b: EmbeddingTable) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key in ("ids", "values", "optimizer_state", "counts", "last_step", "last_time"):
        assert sa[key].dtype == sb[key].dtype, key
        # Byte equality: bit-identical, NaN payloads and signed zeros included.
        assert sa[key].tobytes() == sb[key].tobytes(), key


@pytest.mark.parametrize("storage", ["float32", "float16"])
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_unique_push_is_bit_identical(kind: str, storage: str) -> None:
    a, b = _pair(OPTIMIZERS[kind], storage)
    rng = np.random.default_rng(7)
    universe = rng.integers(-(2**62), 2**62, size=600, dtype=np.int64)
    for step in range(12):
        seen = rng.choice(universe, size=150, replace=False)
        a.pull(seen)
        b.pull(seen)
        # Distinct ids in random order, some of them without a row.
        ids = rng.permutation(np.concatenate([seen[:120], rng.choice(universe, 30)]))
        ids = np.unique(ids)[rng.permutation(np.unique(ids).shape[0])]
        grads = rng.normal(size=(ids.shape[0], DIM)).astype(np.float32)
        assert a.push(ids, grads) == b.push(ids, grads, unique=True)
        a.advance(step + 1, now=1000.0 + step)
        b.advance(step + 1, now=1000.0 + step)
    _assert_same_state(a, b)
    da, db = a.export_delta(), b.export_delta()
    assert da["ids"].tobytes() == db["ids"].tobytes()


def test_unique_push_skips_absent_ids_and_counts_rows() -> None:
    _, t = _pair(OPTIMIZERS["sgd"], "float32")
    t.pull(np.arange(10, dtype=np.int64))
    before = t.pull(np.arange(10, dtype=np.int64), train=False)
    ids = np.array([3, 100, 7, 200], dtype=np.int64)
    assert t.push(ids, np.ones((4, DIM), np.float32), unique=True) == 2
    after = t.pull(np.arange(10, dtype=np.int64), train=False)
    moved = np.flatnonzero((after != before).any(axis=1))
    np.testing.assert_array_equal(moved, [3, 7])
    assert len(t) == 10
    assert t.push(np.empty(0, np.int64), np.empty((0, DIM), np.float32), unique=True) == 0


@pytest.mark.parametrize("unique", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, -1, 4097])
def test_non_finite_grads_change_nothing(unique: bool, bad: float, where: int) -> None:
    _, t = _pair(OPTIMIZERS["adagrad"], "float32")
    ids = np.arange(1000, dtype=np.int64)  # 5000 floats: several check blocks, even count
    t.pull(ids)
    before = t.state_dict()
    grads = np.ones((ids.shape[0], DIM), np.float32)
    grads.reshape(-1)[where] = bad
    with pytest.raises(TableInputError, match="NaN or infinity"):
        t.push(ids, grads, unique=unique)
    after = t.state_dict()
    for key in ("values", "optimizer_state", "counts", "last_step"):
        assert before[key].tobytes() == after[key].tobytes(), key


@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (3, 5), (4, 4), (1000, 9), (4096, 16)])
def test_all_finite_matches_numpy(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    # Extremes of the finite range: largest normal, smallest subnormal, both signs of zero.
    x = (rng.normal(size=shape) * 1e30).astype(np.float32)
    if x.size:
        x.reshape(-1)[: min(4, x.size)] = [3.4028235e38, -1e-45, -0.0, 0.0][: min(4, x.size)]
    assert K.all_finite(x)
    for _ in range(min(x.size, 20)):
        y = x.copy()
        y.reshape(-1)[rng.integers(x.size)] = rng.choice([np.nan, np.inf, -np.inf, -np.nan])
        assert K.all_finite(y) == bool(np.isfinite(y).all()) is False
    # A view that starts 4 bytes into its buffer (not 8-byte aligned).
    buf = np.zeros(x.size + 1, np.float32)
    buf[1:] = x.reshape(-1)
    assert K.all_finite(buf[1:].reshape(shape))


class _Remote:
    """A TableLike that is not an EmbeddingTable (as a PS client): plain push(ids, grads)."""

    def __init__(self, t: EmbeddingTable) -> None:
        self.t = t

    def pull(self, ids: np.ndarray, train: bool = True) -> np.ndarray:
        return self.t.pull(ids, train=train)

    def push(self, ids: np.ndarray, grads: np.ndarray) -> None:
        self.t.push(ids, grads)


def test_sparse_embedding_step_matches_the_plain_push_path() -> None:
    local, remote = _pair(OPTIMIZERS["adagrad"], "float32")
    feats = [FeatureSpec("a", "t"), FeatureSpec("tags", "t", "mean")]
    m_local = SparseEmbedding({"t": local}, feats, DIM)
    m_remote = SparseEmbedding({"t": _Remote(remote)}, feats, DIM)
    rng = np.random.default_rng(3)
    for step in range(5):
        b = 64
        lengths = np.concatenate([np.ones(b, np.int64), rng.integers(0, 4, size=b)])
        values = rng.integers(0, 200, size=int(lengths.sum()))
        kjt = KeyedJaggedTensor.from_lengths(["a", "tags"], values, lengths)
        for m in (m_local, m_remote):
            out = m(kjt)
            (out * torch.arange(out.numel(), dtype=torch.float32).view_as(out)).sum().backward()
            assert m.apply_sparse_gradients() > 0
        local.advance(step + 1, now=float(step))
        remote.advance(step + 1, now=float(step))
    _assert_same_state(local, remote)
