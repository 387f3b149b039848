"""Binary classification metrics for CTR: ROC AUC (by ranks) and log loss.

Both take labels in {0, 1} and predicted probabilities/scores as 1-D arrays. Pure numpy,
O(n log n), exact with ties (tied scores get their average rank, so AUC counts a tie as
half a correct pair).
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc", "calibration_by_decile", "logloss"]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must have the same length")
    pos = y > 0.5
    n_pos = int(pos.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Average ranks over runs of equal scores (1-based ranks).
    boundaries = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s_sorted.shape[0]]))
    avg_rank = (starts + ends + 1) / 2.0
    ranks = np.empty_like(s_sorted)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood in nats; probabilities are clipped to [eps, 1 - eps]."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probs {p.shape} must have the same length")
    if y.shape[0] == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def calibration_by_decile(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict]:
    """Predicted vs observed positive rate in ``bins`` equal-count groups of rising
    prediction: ``[{"decile", "count", "predicted", "observed"}]`` (rates as fractions).
    A calibrated model has ``predicted`` close to ``observed`` in every group."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probs {p.shape} must have the same length")
    order = np.argsort(p, kind="mergesort")
    out = []
    for i, idx in enumerate(np.array_split(order, bins)):
        if idx.size:
            out.append({"decile": i + 1, "count": int(idx.size),
                        "predicted": float(p[idx].mean()), "observed": float(y[idx].mean())})
    return out
