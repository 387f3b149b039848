"""Scheduler cycle time and admission throughput on a seeded synthetic cluster.

For 1,000 / 10,000 / 50,000 pending workloads on 1,000 nodes and 50 groups
(``plinth.scheduler.trace.make_state``: a cluster ~90% full of running work
placed by the scheduler itself, and a queue of mixed CPU jobs, GPU gangs and
notebooks), run :func:`plinth.scheduler.schedule` repeatedly on the same
snapshot and report p50/p99 cycle time. ``admissions_per_s``: half of the
running work ends (capacity frees up) and one cycle over 10,000 pending
admits what fits; admissions divided by that cycle's time.

Baseline, measured in the same run over the same snapshots: a naive FIFO
first-fit (queue-time order, group quota check, each replica placed on the
first node with room by scanning the node list; no borrowing, no index),
the obvious first implementation. Figures are reported with their ratio.

``build_ms`` is the time to construct the snapshot's workload objects from
plain values, which the server pays once per cycle before calling the core.

Usage: ``python benchmarks/scheduler_cycle.py --json [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plinth.scheduler import Snapshot, Workload, schedule
from plinth.scheduler.trace import make_state

NOW = 1_000_000.0


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def naive_fifo_first_fit(s: Snapshot) -> int:
    """The baseline: returns the number admitted."""
    free = {n.name: list(n.capacity.as_tuple()) for n in s.nodes}
    for w in s.running:
        for name, v in w.node_usage().items():
            f = free[name]
            for k in range(3):
                f[k] -= v[k]
    quota = {g.name: list(g.nominal.as_tuple()) for g in s.groups}
    for w in s.running:
        q = quota[w.group]
        for k in range(3):
            q[k] -= w.total_t[k]
    names = [n.name for n in s.nodes]
    admitted = 0
    for w in sorted(s.pending, key=lambda w: (w.queue_time, w.seq)):
        q = quota[w.group]
        if any(w.total_t[k] > q[k] + 1e-9 for k in range(3)):
            continue
        taken: list[tuple[str, tuple[float, float, float]]] = []
        ok = True
        for rep in w.replicas_t:
            for name in names:
                f = free[name]
                if f[0] + 1e-9 >= rep[0] and f[1] >= rep[1] and f[2] >= rep[2]:
                    for k in range(3):
                        f[k] -= rep[k]
                    taken.append((name, rep))
                    break
            else:
                ok = False
                break
        if not ok:
            for name, rep in taken:
                for k in range(3):
                    free[name][k] += rep[k]
            continue
        for k in range(3):
            q[k] -= w.total_t[k]
        admitted += 1
    return admitted


def _rebuild(ws: tuple[Workload, ...]) -> tuple[Workload, ...]:
    return tuple(
        Workload(id=w.id, group=w.group, user=w.user, roles=w.roles,
                 max_runtime_s=w.max_runtime_s, queue_time=w.queue_time, kind=w.kind,
                 priority=w.priority, seq=w.seq, start_time=w.start_time,
                 placements=w.placements)
        for w in ws
    )


def measure(pending: int, nodes: int, groups: int, reps: int, base_reps: int,
            seed: int) -> dict:
    ns, gs, running, pend = make_state(pending=pending, nodes=nodes, groups=groups, seed=seed)
    t0 = time.perf_counter()
    running2, pend2 = _rebuild(running), _rebuild(pend)
    build_ms = (time.perf_counter() - t0) * 1000
    s = Snapshot(now=NOW, nodes=ns, groups=gs, running=running2, pending=pend2)
    times = []
    phases: dict[str, list[float]] = {}
    admitted = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        d = schedule(s)
        times.append((time.perf_counter() - t0) * 1000)
        admitted = len(d.admissions)
        for k, v in d.phases.items():
            phases.setdefault(k, []).append(v * 1000)
    base = []
    for _ in range(base_reps):
        t0 = time.perf_counter()
        naive_fifo_first_fit(s)
        base.append((time.perf_counter() - t0) * 1000)
    p50 = _pct(times, 0.5)
    b50 = _pct(base, 0.5)
    return {
        "pending": pending,
        "nodes": nodes,
        "groups": groups,
        "running": len(running),
        "reps": reps,
        "p50_ms": round(p50, 2),
        "p99_ms": round(_pct(times, 0.99), 2),
        "mean_ms": round(statistics.fmean(times), 2),
        "admitted": admitted,
        "preempted": len(d.preemptions),
        "phases_p50_ms": {k: round(_pct(v, 0.5), 2) for k, v in phases.items()},
        "build_ms": round(build_ms, 1),
        "baseline_naive_fifo_p50_ms": round(b50, 2),
        "speedup_vs_baseline": round(b50 / p50, 2) if p50 else None,
    }


def admissions_rate(pending: int, nodes: int, groups: int, reps: int, seed: int) -> dict:
    ns, gs, running, pend = make_state(pending=pending, nodes=nodes, groups=groups, seed=seed)
    # Capacity frees up: every other running workload has ended.
    s = Snapshot(now=NOW, nodes=ns, groups=gs, running=running[::2], pending=pend)
    rates, counts, base_rates = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        d = schedule(s)
        dt = time.perf_counter() - t0
        rates.append(len(d.admissions) / dt)
        counts.append(len(d.admissions))
    t0 = time.perf_counter()
    n = naive_fifo_first_fit(s)
    base_rates.append(n / (time.perf_counter() - t0))
    return {
        "admissions_per_s": round(_pct(rates, 0.5)),
        "admitted_per_cycle": counts[0],
        "baseline_admissions_per_s": round(base_rates[0]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        nodes, groups = 100, 10
        plan = [(200, 5, 2), (1000, 5, 1)]
        rate_pending = 1000
    else:
        nodes, groups = 1000, 50
        plan = [(1000, 50, 3), (10000, 30, 2), (50000, 10, 1)]
        rate_pending = 10000
    t0 = time.perf_counter()
    cycles = [measure(p, nodes, groups, reps, base_reps, args.seed)
              for p, reps, base_reps in plan]
    rate = admissions_rate(rate_pending, nodes, groups, 5, args.seed)
    at10k = next((c for c in cycles if c["pending"] == 10000), None)
    out = {
        "benchmark": "scheduler_cycle",
        "seed": args.seed,
        "cycles": cycles,
        **rate,
        "targets": {
            "p99_ms_at_10k_lt_100": None if at10k is None else at10k["p99_ms"] < 100,
            "admissions_per_s_ge_1000": rate["admissions_per_s"] >= 1000,
        },
        "python": sys.version.split()[0],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
