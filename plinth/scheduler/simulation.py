"""Replay a trace through the production scheduler core in simulated time.

Used by ``plinth scheduler simulate`` and ``benchmarks/scheduler_sim.py``: the same
function, so their figures agree. Pure: no clock reads (``timer`` only measures the
cycles' cost), no I/O.

The replay: workloads arrive at their ``arrival``; whenever something changed
(an arrival, an end) and work is pending -- at most once per ``tick_s`` while
work waits -- a cycle runs (:func:`plinth.scheduler.schedule`) and its decisions
are applied as the server applies them: an admitted workload runs for its actual
runtime (at most its ``max_runtime``); a preempted one stops ``reclaim_grace_s``
later (or when it ends by itself), loses its progress (no checkpoint: the worst
case) and returns to the queue with its queue time kept; reclaim holds are kept
across cycles (``Snapshot.reclaim_holds``) as the server persists them.

Figures (the window is [``warmup_s``, last arrival]):

* ``utilization``: mean of cpu and gpu useful utilisation (resource-seconds of runs
  that were not preempted, inside the window, over capacity-seconds);
  ``utilization_by_resource`` per resource; ``utilization_full_window`` over
  [0, last arrival].
* ``wait_p50_s`` / ``wait_p95_s`` / ``wait_mean_s`` per group: first start minus
  arrival (one never started counts its wait until the end).
* ``jain_index``: Jain's index over groups of the fraction of each group's work
  (dominant-share-seconds) served inside [0, last arrival].
* ``preemptions``; ``reclaims`` (claimants that preempted anything) with
  ``preemptions_per_reclaim`` (mean) and ``max_preemptions_of_a_victim_per_reclaim``
  (1 when nothing thrashes); ``wasted_gpu_hours`` and ``wasted_cpu_hours`` (work of
  preempted runs thrown away).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from plinth.scheduler.config import SchedulerConfig
from plinth.scheduler.cycle import schedule
from plinth.scheduler.model import Group, Node, ReclaimHold, Snapshot, UsageRecord, Workload
from plinth.scheduler.trace import TraceItem

__all__ = ["percentile", "simulate"]


def percentile(values: Sequence[float], q: float, *, empty: float = 0.0) -> float:
    """The ``q``-th percentile (0..100), linear between ranks (numpy's default method,
    and the one of ``benchmarks/_stats.py``); `empty` when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return empty
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class _Run:
    w: Workload
    started: float
    end: float  # natural end (actual runtime, capped by max_runtime)
    stop_at: float | None = None  # set when preempted: end of the grace period


def simulate(trace: Sequence[TraceItem], nodes: Sequence[Node], groups: Sequence[Group],
             config: SchedulerConfig, tick_s: float = 60.0, warmup_s: float = 0.0, *,
             timer: Callable[[], float] = time.perf_counter) -> dict:
    """Replay ``trace`` (sorted by arrival) on ``nodes`` with quota ``groups`` under
    ``config``; the figures of the module docstring, plus ``_waits`` (per group, every
    wait in seconds) for pooling several runs."""
    nodes, groups = tuple(nodes), tuple(groups)
    cap = [sum(n.capacity.as_tuple()[k] for n in nodes) for k in range(3)]
    horizon = trace[-1].arrival if trace else 0.0
    warmup_s = min(warmup_s, horizon)
    actual = {it.workload.id: it.actual_s for it in trace}
    arrival = {it.workload.id: it.arrival for it in trace}
    first_start: dict[str, float] = {}
    pending: dict[str, Workload] = {}
    running: dict[str, _Run] = {}
    holds: dict[str, ReclaimHold] = {}
    ends: list[tuple[float, str]] = []
    history: list[UsageRecord] = []
    useful = [0.0, 0.0, 0.0]  # within [warmup_s, horizon]
    useful_all = [0.0, 0.0, 0.0]  # within [0, horizon]
    served: dict[str, float] = {g.name: 0.0 for g in groups}
    demand: dict[str, float] = {g.name: 0.0 for g in groups}
    wasted = [0.0, 0.0, 0.0]
    per_reclaim: Counter[tuple[str, str]] = Counter()  # (claimant, victim) -> preemptions
    preemptions = 0
    cycles = 0
    cycle_s = 0.0

    def share(w: Workload) -> float:
        return max(w.total_t[k] / cap[k] for k in range(3) if cap[k] > 0)

    for it in trace:
        demand[it.workload.group] = demand.get(it.workload.group, 0.0) + \
            share(it.workload) * it.actual_s

    def account(r: _Run, until: float, was_wasted: bool) -> None:
        history.append(UsageRecord(r.w.group, r.started, until, r.w.total))
        dur = until - r.started
        if was_wasted:
            for k in (0, 2):
                wasted[k] += r.w.total_t[k] * dur
            return
        inside = max(0.0, min(until, horizon) - r.started)
        measured = max(0.0, min(until, horizon) - max(r.started, warmup_s))
        for k in range(3):
            useful[k] += r.w.total_t[k] * measured
            useful_all[k] += r.w.total_t[k] * inside
        served[r.w.group] = served.get(r.w.group, 0.0) + share(r.w) * inside

    i = 0
    t = 0.0
    grace = config.reclaim_grace_s
    while i < len(trace) or pending or running:
        changed = False
        while i < len(trace) and trace[i].arrival <= t:
            w = trace[i].workload
            pending[w.id] = w
            i += 1
            changed = True
        while ends and ends[0][0] <= t:
            _, wid = heapq.heappop(ends)
            r = running.get(wid)
            if r is None:
                continue
            if r.stop_at is not None and r.stop_at <= t:
                del running[wid]
                account(r, min(r.end, r.stop_at), was_wasted=r.stop_at < r.end)
                if r.stop_at < r.end:
                    pending[wid] = replace(r.w, start_time=None, placements=None,
                                           preempting=False)
                changed = True
            elif r.stop_at is None and r.end <= t:
                del running[wid]
                account(r, r.end, was_wasted=False)
                changed = True
        if changed and pending:
            # Keep fair-share history short: older records weigh < 1/1000.
            cutoff = t - 10 * config.fair_share_half_life_s
            if history and history[0].end < cutoff:
                history[:] = [h for h in history if h.end >= cutoff]
            snap = Snapshot(
                now=t, nodes=nodes, groups=groups,
                running=tuple(r.w for r in running.values()),
                pending=tuple(pending.values()),
                usage_history=tuple(history),
                reclaim_holds=tuple(holds.values()),
            )
            c0 = timer()
            d = schedule(snap, config)
            cycle_s += timer() - c0
            cycles += 1
            for c in d.released_holds:
                holds.pop(c, None)
            holds.update((h.claimant, h) for h in d.holds)
            for a in d.admissions:
                w = pending.pop(a.workload_id)
                first_start.setdefault(w.id, t)
                rw = replace(w, start_time=t, placements=a.placement, reservation=a.reservation)
                end = t + min(actual[w.id], w.max_runtime_s)
                running[w.id] = _Run(rw, t, end)
                heapq.heappush(ends, (end, w.id))
            for p in d.preemptions:
                r = running[p.workload_id]
                if r.stop_at is None:
                    preemptions += 1
                    per_reclaim[(p.for_workload, p.workload_id)] += 1
                    r.stop_at = t + grace
                    r.w = replace(r.w, preempting=True)
                    heapq.heappush(ends, (min(r.stop_at, r.end), r.w.id))
        # Next moment something can change.
        nxt = [t + tick_s]
        if i < len(trace):
            nxt.append(max(trace[i].arrival, t + tick_s) if pending else trace[i].arrival)
        if ends:
            nxt.append(max(ends[0][0], t + tick_s) if pending else ends[0][0])
        t = min(nxt) if (pending or not running) else min(x for x in nxt[1:]) if nxt[1:] \
            else t + tick_s
        if t > horizon * 5 + 86400 * 7:
            break  # a workload that can never start; reported as waiting till the end

    end_t = t
    waits: dict[str, list[float]] = {g.name: [] for g in groups}
    for it in trace:
        w = it.workload
        waits.setdefault(w.group, []).append(first_start.get(w.id, end_t) - arrival[w.id])
    span = horizon - warmup_s
    util = {name: (useful[k] / (cap[k] * span) if cap[k] and span > 0 else 0.0)
            for k, name in enumerate(("cpu", "memory", "gpu"))}
    util_all = {name: (useful_all[k] / (cap[k] * horizon) if cap[k] and horizon else 0.0)
                for k, name in enumerate(("cpu", "memory", "gpu"))}
    ratios = [served[g] / demand[g] for g in demand if demand[g] > 0]
    squares = sum(x * x for x in ratios)
    # Nothing served inside the window (a trace of one moment): equal, trivially.
    jain = (sum(ratios) ** 2 / (len(ratios) * squares)) if squares > 0 else 1.0
    reclaims = len({c for c, _ in per_reclaim})
    return {
        "utilization": round((util["cpu"] + util["gpu"]) / 2, 4),
        "utilization_by_resource": {k: round(v, 4) for k, v in util.items()},
        "utilization_full_window": round((util_all["cpu"] + util_all["gpu"]) / 2, 4),
        "jain_index": round(jain, 4),
        "preemptions": preemptions,
        "reclaims": reclaims,
        "preemptions_per_reclaim": round(preemptions / reclaims, 3) if reclaims else 0.0,
        "max_preemptions_of_a_victim_per_reclaim": max(per_reclaim.values(), default=0),
        "wasted_gpu_hours": round(wasted[2] / 3600.0, 2),
        "wasted_cpu_hours": round(wasted[0] / 3600.0, 2),
        "wait_p50_s": {g: round(percentile(v, 50), 1) for g, v in waits.items()},
        "wait_p95_s": {g: round(percentile(v, 95), 1) for g, v in waits.items()},
        "wait_mean_s": {g: round(sum(v) / len(v), 1) if v else 0.0 for g, v in waits.items()},
        "workloads": len(trace),
        "never_started": sum(1 for it in trace if it.workload.id not in first_start),
        "cycles": cycles,
        "cycle_mean_ms": round(1000 * cycle_s / max(cycles, 1), 3),
        "_waits": waits,
    }
