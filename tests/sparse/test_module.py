"""SparseEmbedding: pooling matches a reference, gradients reach the tables' optimizers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from plinth.sparse.config import OptimizerConfig, TableConfig
from plinth.sparse.jagged import KeyedJaggedTensor
from plinth.sparse.module import FeatureSpec, SparseEmbedding, unique_inverse
from plinth.sparse.table import EmbeddingTable

DIM = 4


def _table(name="t", lr=0.5):
    return EmbeddingTable(
        TableConfig(name=name, dim=DIM, optimizer=OptimizerConfig(kind="sgd", lr=lr), init_std=0.1)
    )


def _kjt():
    # B = 3; "a" single-valued, "tags" multi-valued (one empty slot), "w" single-valued.
    return KeyedJaggedTensor.from_lengths(
        ["a", "tags", "w"],
        [1, 2, 1, 5, 6, 7, 5, 8, 9, 1],
        [1, 1, 1, 2, 0, 2, 1, 1, 1],
        weights=[1, 1, 1, 0.5, 2, 1, 3, 1, 1, 1],
    )


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_forward_matches_reference_pooling(pooling):
    t1, t2 = _table("t1"), _table("t2")
    feats = [FeatureSpec("a", "t1"), FeatureSpec("tags", "t1", pooling), FeatureSpec("w", "t2")]
    m = SparseEmbedding({"t1": t1, "t2": t2}, feats, DIM).eval()
    kjt = _kjt()
    out = m(kjt).detach().numpy()
    assert out.shape == (3, 3, DIM)
    assert len(t1) == 0 and len(t2) == 0  # eval reads create no rows

    def row(t, i):
        return t.pull(np.array([i]), train=False)[0]

    np.testing.assert_allclose(out[:, 0], [row(t1, 1), row(t1, 2), row(t1, 1)], rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], [row(t2, 8), row(t2, 9), row(t2, 1)], rtol=1e-6)
    tags = kjt["tags"]
    want = []
    for ids, ws in zip(tags.to_lists(), [[0.5, 2], [], [1, 3]], strict=True):
        if not ids:
            want.append(np.zeros(DIM))
            continue
        rows = np.stack([row(t1, i) for i in ids])
        if pooling == "sum":
            want.append((rows * np.array(ws)[:, None]).sum(0))
        else:
            want.append(rows.mean(0))
    np.testing.assert_allclose(out[:, 1], want, rtol=1e-5, atol=1e-7)


def test_gradients_reach_the_table_like_a_dense_reference():
    lr = 0.5
    t1 = _table("t1", lr)
    feats = [FeatureSpec("a", "t1"), FeatureSpec("tags", "t1", "mean"), FeatureSpec("w", "t1")]
    m = SparseEmbedding({"t1": t1}, feats, DIM).train()
    kjt = _kjt()
    ids = np.unique(kjt.values())
    before = t1.pull(ids, train=False).copy()
    target = torch.linspace(-1, 1, 3 * 3 * DIM).view(3, 3, DIM)
    loss = ((m(kjt) - target) ** 2).sum()
    loss.backward()
    assert m.apply_sparse_gradients() == len(ids)
    after = t1.pull(ids, train=False)

    # Reference: the same loss over a dense parameter holding the same rows.
    w = torch.tensor(before, requires_grad=True)
    pos = {int(i): j for j, i in enumerate(ids)}
    loc = lambda xs: torch.tensor([pos[int(x)] for x in xs])
    a = F.embedding(loc(kjt["a"].values), w)
    tg = kjt["tags"]
    tags = F.embedding_bag(loc(tg.values), w, torch.from_numpy(tg.offsets()[:-1]), mode="mean")
    ww = F.embedding(loc(kjt["w"].values), w)
    ref = ((torch.stack([a, tags, ww], 1) - target) ** 2).sum()
    ref.backward()
    np.testing.assert_allclose(after, before - lr * w.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert m.apply_sparse_gradients() == 0  # nothing pending any more


def test_no_grad_forward_records_nothing_and_missing_keys_are_named():
    t = _table()
    m = SparseEmbedding({"t": t}, [FeatureSpec("a", "t")], DIM).train()
    with torch.no_grad():
        m(_kjt())
    assert m.apply_sparse_gradients() == 0
    with pytest.raises(KeyError, match="lacks feature keys"):
        SparseEmbedding({"t": t}, [FeatureSpec("zz", "t")], DIM)(_kjt())
    with pytest.raises(ValueError, match="not among"):
        SparseEmbedding({"t": t}, [FeatureSpec("a", "other")], DIM)


def test_output_order_follows_features_across_tables():
    t1, t2 = _table("t1"), _table("t2")
    feats = [FeatureSpec("w", "t2"), FeatureSpec("a", "t1"), FeatureSpec("tags", "t2")]
    m = SparseEmbedding({"t1": t1, "t2": t2}, feats, DIM).eval()
    out = m(_kjt()).detach().numpy()
    np.testing.assert_allclose(out[:, 0], t2.pull(np.array([8, 9, 1]), train=False))
    np.testing.assert_allclose(out[:, 1], t1.pull(np.array([1, 2, 1]), train=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300), st.integers(1, 4))
def test_unique_inverse_matches_numpy(values, repeat):
    ids = np.array(values * repeat, dtype=np.int64)
    uniq, inverse = unique_inverse(ids)
    np.testing.assert_array_equal(uniq[inverse], ids)
    np.testing.assert_array_equal(np.sort(uniq), np.unique(ids))
