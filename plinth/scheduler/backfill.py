"""Backfill: the earliest start of the top blocked workload, and the capacity
to keep for it.

``max_runtime`` is enforced, so every running workload has a latest end. The
earliest start ``T`` of the top blocked workload is the first running
workload's end after which its gang fits (found by binary search over the end
times, with numpy). Its projected placement at ``T`` needs ``S[n]`` on node
``n``; by ``T``, ``R[n]`` will have been released there, so
``max(0, S[n] - R[n])`` of today's free capacity must stay free for it. That
capacity becomes a :class:`~plinth.scheduler.placement.Hold` that starts at
``T``: work that ends by ``T`` may still use it (it cannot delay the top
workload), other work must fit elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from plinth.scheduler.model import Workload
from plinth.scheduler.placement import Hold, NodePool
from plinth.scheduler.resources import CPU_EPS

Vec = tuple[float, float, float]
# One release event: (end time, {node index: resources freed}).
Release = tuple[float, dict[int, Vec]]


def _gang_fit(free: np.ndarray, reps: Sequence[Vec]) -> list[int] | None:
    """Greedy best-fit of replicas onto a free-capacity matrix (copied), or None."""
    f = free.copy()
    out = [-1] * len(reps)
    order = sorted(range(len(reps)), key=lambda j: (reps[j][2], reps[j][0], reps[j][1]),
                   reverse=True)
    for j in order:
        rep = np.asarray(reps[j])
        ok = (f[:, 0] + CPU_EPS >= rep[0]) & (f[:, 1] >= rep[1]) & (f[:, 2] >= rep[2])
        cand = np.flatnonzero(ok)
        if cand.size == 0:
            return None
        left = f[cand] - rep
        key = left[:, 2] * 1e12 + left[:, 0] * 1e6 + left[:, 1] / 1e3
        i = int(cand[int(np.argmin(key))])
        f[i] -= rep
        out[j] = i
    return out


def shadow(
    pool: NodePool, w: Workload, releases: Sequence[Release], now: float
) -> tuple[float, list[Hold]] | None:
    """Earliest start of ``w`` and the holds that keep it, or None if ``w`` does
    not fit even after every running workload has ended.

    ``releases`` must be sorted by end time.
    """
    free0 = np.array(pool.free, dtype=float).reshape(len(pool.free), 3)
    idx_parts: list[int] = []
    vec_parts: list[Vec] = []
    offsets = [0]
    for _, per_node in releases:
        for i, v in per_node.items():
            idx_parts.append(i)
            vec_parts.append(v)
        offsets.append(len(idx_parts))
    idx = np.asarray(idx_parts, dtype=np.int64)
    vec = np.asarray(vec_parts, dtype=float).reshape(len(vec_parts), 3)

    def free_at(k: int) -> np.ndarray:
        f = free0.copy()
        if k:
            np.add.at(f, idx[: offsets[k]], vec[: offsets[k]])
        return f

    reps = w.replicas_t
    n = len(releases)
    # Aggregate demand must be met before placement can: skip ahead cheaply.
    need = np.asarray(w.total_t)
    agg = np.maximum(free0, 0).sum(axis=0)
    if np.all(agg + CPU_EPS >= need):
        lo = 0
    else:
        per_event = np.zeros((n, 3))
        for e, (_, per_node) in enumerate(releases):
            for v in per_node.values():
                per_event[e] += v
        enough = np.all(agg + np.cumsum(per_event, axis=0) + CPU_EPS >= need, axis=1)
        hits = np.flatnonzero(enough)
        if hits.size == 0:
            return None
        lo = int(hits[0]) + 1
    if _gang_fit(free_at(n), reps) is None:
        return None
    hi = n
    while lo < hi:  # smallest k whose projected capacity fits the gang
        mid = (lo + hi) // 2
        if _gang_fit(free_at(mid), reps) is not None:
            hi = mid
        else:
            lo = mid + 1
    k = lo
    start = releases[k - 1][0] if k else now
    fk = free_at(k)
    nodes = _gang_fit(fk, reps)
    assert nodes is not None
    need_on: dict[int, np.ndarray] = {}
    for rep, i in zip(reps, nodes, strict=True):
        need_on[i] = need_on.get(i, np.zeros(3)) + np.asarray(rep)
    holds = []
    for i, s in need_on.items():
        released = fk[i] - free0[i]
        keep = np.minimum(np.maximum(s - released, 0.0), np.maximum(free0[i], 0.0))
        if keep.any():
            holds.append(
                Hold(
                    node=i,
                    amount=(float(keep[0]), float(keep[1]), float(keep[2])),
                    start=max(start, now),
                    end=float("inf"),
                    workload=w.id,
                )
            )
    return max(start, now), holds
