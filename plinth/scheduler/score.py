"""The score of pending workloads: a weighted sum of factors, each in [0, 1].

Computed for all pending workloads at once with numpy (a cycle may see
50,000); :class:`ScoreTable` keeps the arrays and builds a
:class:`ScoreBreakdown` only when someone asks for one.

Factors (higher ranks earlier):

* ``aging``: ``min(1, queue age / aging_saturation_s)``.
* ``runtime``: ``1 - log(1 + max_runtime/60) / log(1 + runtime_reference_s/60)``,
  clipped to [0, 1]: one minute scores ~1, the reference or longer scores 0.
* ``size``: ``1 - min(1, dominant share / size_reference)``; the dominant
  share is the largest fraction of the cluster's total cpu, memory or gpu
  that the workload requests.
* ``fit``: granularity. GPU work: how well its cpu and memory per GPU match
  the GPU nodes' (asking more strands GPUs) times how well its GPUs per
  replica tile a node (3 of 8 GPUs leaves 2 unusable). CPU work: 1 when a
  CPU-only node can hold its largest replica (it stays off GPU nodes), else
  0.5, times its memory-per-core balance against the CPU nodes.
* ``fair_share``: ``2 ** (-U / S)`` (Slurm's classic formula): ``U`` is the
  group's share of all decayed past usage (half-life
  ``fair_share_half_life_s``), ``S`` the group's share of all nominal quota.
* ``priority``: the priority class's value from ``priority_classes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from plinth.scheduler.config import SchedulerConfig, Weights
from plinth.scheduler.model import Node, UsageRecord, Workload
from plinth.scheduler.outcomes import ScoreBreakdown

FACTORS: tuple[str, ...] = ("aging", "runtime", "size", "fit", "fair_share", "priority")

_LN2 = math.log(2.0)


def cluster_total(nodes: Sequence[Node]) -> tuple[float, float, float]:
    c = m = g = 0.0
    for n in nodes:
        c += n.capacity.cpu
        m += n.capacity.memory
        g += n.capacity.gpu
    return (c, m, g)


def _dominant(v: tuple[float, float, float], total: tuple[float, float, float]) -> float:
    return max((v[k] / total[k]) if total[k] > 0 else 0.0 for k in range(3))


def decayed_usage(
    records: Sequence[UsageRecord],
    running: Sequence[Workload],
    now: float,
    half_life_s: float,
    total: tuple[float, float, float],
) -> dict[str, float]:
    """Per group: dominant-share-seconds of past and current usage, each second
    weighted by ``2 ** (-(now - t) / half_life_s)``.

    A record ``[a, b)`` holding share ``s`` contributes the exact integral
    ``s * h/ln2 * (2**(-(now-b)/h) - 2**(-(now-a)/h))``.
    """
    h = half_life_s
    out: dict[str, float] = {}

    def add(group: str, share: float, a: float, b: float) -> None:
        b = min(b, now)
        if b <= a or share <= 0:
            return
        v = share * h / _LN2 * (2.0 ** (-(now - b) / h) - 2.0 ** (-(now - a) / h))
        out[group] = out.get(group, 0.0) + v

    for r in records:
        add(r.group, _dominant(r.resources.as_tuple(), total), r.start, r.end)
    for w in running:
        if w.start_time is not None:
            add(w.group, _dominant(w.total_t, total), w.start_time, now)
    return out


def fair_share_factors(
    usage: Mapping[str, float], nominal: Mapping[str, tuple[float, float, float]],
    total: tuple[float, float, float],
) -> dict[str, float]:
    """Per group ``2 ** (-U/S)``; 1 for everyone while nobody has used anything."""
    shares = {g: _dominant(n, total) for g, n in nominal.items()}
    s_sum = sum(shares.values())
    u_sum = sum(max(v, 0.0) for v in usage.values())
    out: dict[str, float] = {}
    for g in nominal:
        if u_sum <= 0:
            out[g] = 1.0
            continue
        u = max(usage.get(g, 0.0), 0.0) / u_sum
        s = shares[g] / s_sum if s_sum > 0 else 0.0
        if u <= 0:
            out[g] = 1.0
        elif s <= 0:
            out[g] = 0.0
        else:
            out[g] = 2.0 ** (-u / s)
    return out


def _node_ratios(nodes: Sequence[Node]) -> tuple[float, float, float, int, bool]:
    """(cpu per gpu, memory per gpu) of GPU nodes, memory per core of CPU nodes,
    the most common GPU count per GPU node, and whether CPU-only nodes exist."""
    gc = gm = gg = 0.0
    cc = cm = 0.0
    counts: dict[int, int] = {}
    has_cpu = False
    for n in nodes:
        cap = n.capacity
        if cap.gpu > 0:
            gc += cap.cpu
            gm += cap.memory
            gg += cap.gpu
            counts[cap.gpu] = counts.get(cap.gpu, 0) + 1
        else:
            has_cpu = True
            cc += cap.cpu
            cm += cap.memory
    common = max(counts, key=lambda k: (counts[k], k)) if counts else 0
    return (
        gc / gg if gg else 0.0,
        gm / gg if gg else 0.0,
        cm / cc if cc else 0.0,
        common,
        has_cpu,
    )


class ScoreTable:
    """Factor arrays for a list of pending workloads, aligned with it."""

    def __init__(
        self,
        ids: Sequence[str],
        factors: Mapping[str, np.ndarray],
        weights: Weights,
    ) -> None:
        self.ids = ids
        self.factors = factors
        self.weights = {k: float(getattr(weights, k)) for k in FACTORS}
        total = np.zeros(len(ids))
        for k in FACTORS:
            total += self.weights[k] * factors[k]
        self.total = total
        self._pos: dict[str, int] | None = None

    def breakdown(self, workload_id: str) -> ScoreBreakdown:
        if self._pos is None:
            self._pos = {w: i for i, w in enumerate(self.ids)}
        i = self._pos[workload_id]
        return ScoreBreakdown(
            factors={k: float(self.factors[k][i]) for k in FACTORS},
            weights=dict(self.weights),
            total=float(self.total[i]),
        )


def score_pending(
    pending: Sequence[Workload],
    *,
    now: float,
    config: SchedulerConfig,
    nodes: Sequence[Node],
    total: tuple[float, float, float],
    fair_share: Mapping[str, float],
    rows: np.ndarray | None = None,
    fs: np.ndarray | None = None,
) -> ScoreTable:
    """Score every pending workload (see the module docstring for the factors).

    ``rows`` (``Workload.row`` of each, stacked) and ``fs`` (each one's group
    fair-share factor) may be passed when the caller already built them.
    """
    n = len(pending)
    if rows is None:
        rows = np.array([w.row for w in pending], dtype=float).reshape(n, 9)
    qt, rt = rows[:, 0], rows[:, 1]
    tot, big = rows[:, 3:6], rows[:, 6:9]
    prio_map, dflt = config.priority_classes, config.default_priority
    pri = np.fromiter((prio_map.get(w.priority, dflt) for w in pending), float, n)
    if fs is None:
        fs = np.fromiter((fair_share.get(w.group, 0.0) for w in pending), float, n)

    aging = np.clip((now - qt) / config.aging_saturation_s, 0.0, 1.0)
    runtime = 1.0 - np.clip(
        np.log1p(np.maximum(rt, 0.0) / 60.0) / math.log1p(config.runtime_reference_s / 60.0),
        0.0,
        1.0,
    )
    tot_arr = np.array([t if t > 0 else np.inf for t in total])
    share = (tot / tot_arr).max(axis=1) if n else np.zeros(0)
    size = 1.0 - np.clip(share / config.size_reference, 0.0, 1.0)

    cpu_per_gpu, mem_per_gpu, mem_per_cpu, common_gpu, has_cpu = _node_ratios(nodes)
    with np.errstate(divide="ignore", invalid="ignore"):
        is_gpu = tot[:, 2] > 0
        w_cpu_per_gpu = np.where(is_gpu, tot[:, 0] / np.maximum(tot[:, 2], 1), 0.0)
        w_mem_per_gpu = np.where(is_gpu, tot[:, 1] / np.maximum(tot[:, 2], 1), 0.0)
        fit_c = np.where(w_cpu_per_gpu > 0, np.minimum(1.0, cpu_per_gpu / w_cpu_per_gpu), 1.0)
        fit_m = np.where(w_mem_per_gpu > 0, np.minimum(1.0, mem_per_gpu / w_mem_per_gpu), 1.0)
        g_rep = np.maximum(big[:, 2], 1)
        if common_gpu > 0:
            tiles = np.floor(common_gpu / g_rep) * g_rep / common_gpu
            tiles = np.where(g_rep > common_gpu, np.where(g_rep % common_gpu == 0, 1.0, 0.5),
                             tiles)
        else:
            tiles = np.ones(n)
        gpu_fit = np.minimum(fit_c, fit_m) * tiles
        w_mem_per_cpu = np.where(tot[:, 0] > 0, tot[:, 1] / np.maximum(tot[:, 0], 1e-9), 0.0)
        bal = np.where(
            (w_mem_per_cpu > 0) & (mem_per_cpu > 0),
            np.minimum(1.0, mem_per_cpu / np.maximum(w_mem_per_cpu, 1e-9)),
            1.0,
        )
        if has_cpu:
            biggest_cpu_node = max(
                (nd.capacity.cpu for nd in nodes if nd.capacity.gpu == 0), default=0.0
            )
            on_cpu = np.where(big[:, 0] <= biggest_cpu_node + 1e-9, 1.0, 0.5)
        else:
            on_cpu = np.full(n, 0.5)
        cpu_fit = on_cpu * bal
    fit = np.clip(np.where(is_gpu, gpu_fit, cpu_fit), 0.0, 1.0)

    ids = [w.id for w in pending]
    factors = {
        "aging": aging,
        "runtime": runtime,
        "size": size,
        "fit": fit,
        "fair_share": fs,
        "priority": np.clip(pri, 0.0, 1.0),
    }
    return ScoreTable(ids, factors, config.weights)
