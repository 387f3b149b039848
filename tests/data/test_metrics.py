"""AUC against the pairwise definition (ties count half); log loss against its formula."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from plinth.data.metrics import auc, logloss


def _pairwise_auc(y, s):
    pos = [si for yi, si in zip(y, s, strict=True) if yi == 1]
    neg = [si for yi, si in zip(y, s, strict=True) if yi == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=60))
def test_auc_matches_pairwise_definition_with_ties(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    got = auc(y, s)
    if y.min() == y.max():
        assert math.isnan(got)
    else:
        assert math.isclose(got, _pairwise_auc(y, s), rel_tol=1e-12)


def test_logloss_formula_and_clipping():
    y = np.array([1, 0, 1])
    p = np.array([0.9, 0.2, 0.5])
    want = -np.mean([math.log(0.9), math.log(0.8), math.log(0.5)])
    assert math.isclose(logloss(y, p), want)
    assert math.isfinite(logloss([1, 0], [0.0, 1.0]))  # clipped, not infinite
