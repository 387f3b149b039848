"""Replay a synthetic multi-team trace through the scheduler in simulated time.

Three policies run over the SAME trace (same seed), the SAME cluster and the
SAME scheduler core (``plinth.scheduler.schedule``), differing only in
configuration:

* ``fifo``: strict quotas (no borrowing), FIFO order (best effort: a blocked
  head does not stop smaller work behind it), first-fit placement, CPU work
  kept off GPU nodes (the usual taint).
* ``kueue_like``: borrowing and lending with reclaim (Kueue's cohort), FIFO
  within the queue (borrowers too), first-fit placement, CPU work kept off
  GPU nodes, no backfill protection.
* ``plinth``: the full policy (score, best fit, backfill shadow, borrowing,
  reclaim, fair share) with its defaults, plus the two reclaim settings
  recommended where work does not checkpoint: ``reclaim_after_s=7200`` (an
  owner waits up to 2 h for borrowers to end by themselves before it
  preempts) and ``reclaim_least_lost_first=True`` (victims by least work
  lost, priority class only breaking ties).

``--ablations`` adds Plinth with its defaults, with one of those settings
undone, with backfill, reclaim or fair share switched off, and the Kueue-like
baseline with Plinth's victim order (to show how much of the difference the
victim order alone makes).

The trace generator is documented in ``plinth/scheduler/trace.py``; ``--write-trace
FILE`` writes the (first seed's) trace in the JSONL format of ``plinth scheduler
simulate`` (``plinth/scheduler/tracefile.py``) instead of running, so the same trace
can be replayed with any policy file. The replay itself is
``plinth.scheduler.simulation.simulate``, the function ``plinth scheduler simulate``
runs. Each workload runs for its actual runtime (at most its declared
``max_runtime``); a preempted one loses its progress (no checkpoint is assumed: the
worst case), returns to the queue with its original queue time and starts over.

Metrics (the window is [warm-up, last arrival]; warm-up 8 h by default):

* ``utilization``: mean of cpu and gpu useful utilisation — resource-seconds
  of runs that were not preempted, within the window, over capacity-seconds.
  ``utilization_by_resource`` gives cpu, memory and gpu. The cluster starts
  empty and every team starts in a quiet period, so the first hours measure
  the generator's start, not a policy: the first mean busy/quiet cycle
  (8 h = 6 h quiet + 2 h busy) is the warm-up, the same for every policy
  (standard practice: discard the initial transient).
  ``utilization_full_window`` is the same over [0, last arrival].
  Capacity after the last arrival is never counted.
* ``wait_mean_s`` / ``wait_p95_s`` per group: first start minus arrival, for
  every workload (one never started counts its wait until the end).
* ``jain_index``: Jain's index over groups of the fraction of each group's
  submitted work (dominant-share-seconds) served within the window.
* ``preemptions`` (also per reclaim) and ``wasted_gpu_hours`` (GPU-hours of
  preempted runs).

Usage: ``python benchmarks/scheduler_sim.py --json [--quick] [--seeds 1,2,3] [--load 1.5]
[--warmup-hours 8] [--ablations]``. Defaults: 64 nodes, 8 groups, 48 simulated hours, offered
load 1.5 (mean of cpu and gpu, see ``plinth.scheduler.trace.offered_load``),
seeds 1, 2, 3 (results pooled); ``--quick``: 24 nodes, 4 groups, 12 hours,
seed 1, warm-up 2 h.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plinth.scheduler import Ordering, PlacementPolicy, SchedulerConfig, Weights
from plinth.scheduler.simulation import simulate
from plinth.scheduler.trace import (
    make_groups,
    make_nodes,
    make_trace,
    offered_by_resource,
    offered_load,
)
from plinth.scheduler.tracefile import dump_trace

try:
    from benchmarks._stats import percentile
except ImportError:  # run as a script: benchmarks/ is sys.path[0]
    from _stats import percentile

_KUEUE = SchedulerConfig(ordering=Ordering.FIFO, borrowing=True, reclaim=True,
                         fair_borrowing=False, backfill=False,
                         placement=PlacementPolicy.FIRST_FIT, cpu_work_on_gpu_nodes=False)
PLINTH = SchedulerConfig(reclaim_after_s=2 * 3600.0, reclaim_least_lost_first=True)
POLICIES: dict[str, SchedulerConfig] = {
    "fifo": SchedulerConfig(ordering=Ordering.FIFO, borrowing=False, reclaim=False,
                            backfill=False, placement=PlacementPolicy.FIRST_FIT,
                            cpu_work_on_gpu_nodes=False),
    "kueue_like": _KUEUE,
    # Plinth's defaults plus its two reclaim settings for clusters whose work
    # does not checkpoint (docs/scheduling.md, "Reclaim without checkpoints").
    "plinth": PLINTH,
}
# With --ablations: Plinth's policy with one part switched off or back to the
# defaults, and the Kueue-like baseline with Plinth's victim order, to show
# what each part costs or buys on this trace.
ABLATIONS: dict[str, SchedulerConfig] = {
    "plinth_defaults": SchedulerConfig(),
    "plinth_reclaim_at_once": replace(PLINTH, reclaim_after_s=0.0),
    "plinth_priority_victims": replace(PLINTH, reclaim_least_lost_first=False),
    "plinth_no_backfill": replace(PLINTH, backfill=False),
    "plinth_no_reclaim": replace(PLINTH, reclaim=False),
    "plinth_no_fair_share": replace(PLINTH, weights=Weights(fair_share=0.0)),
    "kueue_like_least_lost": replace(_KUEUE, reclaim_least_lost_first=True),
}


def _pool(rs: list[dict]) -> dict:
    """One policy's results over several seeds: means of rates, sums of counts,
    waits pooled over all workloads of all seeds."""
    groups = list(rs[0]["wait_p95_s"])
    waits = {g: [x for r in rs for x in r["_waits"][g]] for g in groups}
    return {
        "utilization": round(sum(r["utilization"] for r in rs) / len(rs), 4),
        "utilization_by_resource": {
            k: round(sum(r["utilization_by_resource"][k] for r in rs) / len(rs), 4)
            for k in ("cpu", "memory", "gpu")
        },
        "utilization_full_window": round(
            sum(r["utilization_full_window"] for r in rs) / len(rs), 4),
        "jain_index": round(sum(r["jain_index"] for r in rs) / len(rs), 4),
        "preemptions": sum(r["preemptions"] for r in rs),
        "wasted_gpu_hours": round(sum(r["wasted_gpu_hours"] for r in rs), 2),
        "wait_p95_s": {g: round(percentile(v, 95, empty=0.0), 1) for g, v in waits.items()},
        "wait_mean_s": {g: round(sum(v) / len(v), 1) if v else 0.0 for g, v in waits.items()},
        "workloads": sum(r["workloads"] for r in rs),
        "never_started": sum(r["never_started"] for r in rs),
        "cycles": sum(r["cycles"] for r in rs),
        "cycle_mean_ms": round(sum(r["cycle_mean_ms"] for r in rs) / len(rs), 3),
        "per_seed_utilization": [r["utilization"] for r in rs],
    }


def _targets(policies: dict[str, dict]) -> dict[str, bool]:
    return {
        "plinth_utilization_ge_0_90": policies["plinth"]["utilization"] >= 0.90,
        "plinth_utilization_above_others": policies["plinth"]["utilization"]
        > max(policies["fifo"]["utilization"], policies["kueue_like"]["utilization"]),
        "no_group_p95_worse_than_kueue_like": all(
            policies["plinth"]["wait_p95_s"][g] <= policies["kueue_like"]["wait_p95_s"][g]
            for g in policies["plinth"]["wait_p95_s"]
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--seeds", type=str, default=None,
                    help="comma-separated trace seeds; results are pooled over them")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--groups", type=int)
    ap.add_argument("--hours", type=float)
    ap.add_argument("--load", type=float, help="offered work / cluster capacity")
    ap.add_argument("--warmup-hours", type=float, default=None,
                    help="hours at the start not counted in utilisation (default 8; quick 2)")
    ap.add_argument("--ablations", action="store_true",
                    help="also run Plinth with parts switched off, and Kueue-like with"
                         " Plinth's victim order")
    ap.add_argument("--only", type=str, default=None, metavar="NAMES",
                    help="comma-separated policy names to run (of the above and --ablations)")
    ap.add_argument("--write-trace", type=Path, metavar="FILE",
                    help="write the first seed's trace as JSONL (with its cluster) and exit")
    args = ap.parse_args(argv)
    nodes_n = args.nodes or (24 if args.quick else 64)
    groups_n = args.groups or (4 if args.quick else 8)
    hours = args.hours or (12.0 if args.quick else 48.0)
    load = args.load or 1.5
    seeds = [int(x) for x in (args.seeds or ("1" if args.quick else "1,2,3")).split(",")]
    warmup_h = args.warmup_hours if args.warmup_hours is not None else (2.0 if args.quick else 8.0)
    tick = 60.0
    nodes = make_nodes(nodes_n)
    groups = make_groups(nodes, groups_n, lend_all=True)
    if args.write_trace is not None:
        trace = make_trace(nodes=nodes, groups=groups, hours=hours, load=load, seed=seeds[0])
        args.write_trace.write_text("\n".join(dump_trace(trace, nodes, groups)) + "\n")
        return 0
    t0 = time.perf_counter()
    configs = dict(POLICIES, **(ABLATIONS if args.ablations else {}))
    if args.only:
        every = dict(POLICIES, **ABLATIONS)
        names = args.only.split(",")
        unknown = [n for n in names if n not in every]
        if unknown:
            ap.error(f"--only: unknown policy {unknown[0]!r}; known: {', '.join(every)}")
        configs = {n: every[n] for n in names}
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    n_items = 0
    offered: list[dict] = []
    for seed in seeds:
        trace = make_trace(nodes=nodes, groups=groups, hours=hours, load=load, seed=seed)
        n_items += len(trace)
        by_res = offered_by_resource(trace, nodes, hours)
        offered.append({"seed": seed, "load": round(offered_load(trace, nodes, hours), 3),
                        "cpu": round(by_res[0], 3), "memory": round(by_res[1], 3),
                        "gpu": round(by_res[2], 3)})
        for name, cfg in configs.items():
            runs[name].append(simulate(trace, nodes, groups, cfg, tick, warmup_h * 3600.0))
    policies = {name: _pool(rs) for name, rs in runs.items()}
    out = {
        "benchmark": "scheduler_sim",
        "seeds": seeds,
        "nodes": nodes_n,
        "groups": groups_n,
        "hours": hours,
        "offered_load": load,
        "offered_by_seed": offered,
        "warmup_hours": warmup_h,
        "workloads": n_items,
        "policies": policies,
        "targets": _targets(policies) if set(POLICIES) <= set(policies) else {},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
