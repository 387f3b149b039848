"""Seeded synthetic clusters, scheduler states and multi-team traces.

Used by ``benchmarks/scheduler_cycle.py`` (a state: nodes, groups, running
and pending work) and ``benchmarks/scheduler_sim.py`` (a trace: workloads
arriving over time). Pure and deterministic for a given seed.

The generator, in words:

* **Cluster**: ``nodes`` machines, a quarter of them GPU nodes (8 GPUs,
  96 cores, 768 GiB), the rest CPU nodes (64 cores, 256 GiB).
* **Groups**: ``groups`` teams whose nominal quotas split the cluster with
  Zipf-like weights (a few big teams, many small ones); each may lend half
  of its nominal and borrow up to its nominal again.
* **Workloads** (mix): 55% CPU jobs (1, 2, 4 or 8 replicas of 2-64 cores,
  2 or 4 GiB per core), 30% GPU gangs (1-4 replicas of 1, 2, 4 or 8 GPUs with 12 cores and
  96 GiB per GPU; 8-GPU replicas are whole nodes), 15% notebooks (one
  replica, 2-4 cores, a quarter with one GPU). Declared ``max_runtime`` is
  log-uniform between 10 minutes and 24 hours; the actual runtime is
  ``declared * u`` with ``u ~ Beta(2, 2)``, and 10% run into their limit.
  Priority: 10% high, 70% normal, 20% low.
* **Arrivals** (trace): each team alternates quiet and busy periods
  (exponential, mean 6 h quiet, 2 h busy) and submits only while busy
  (Poisson, rate proportional to its GPU quota, calibrated so that the
  trace offers ``load`` times the cluster's capacity), so teams burst at
  different times — the situation where lending idle quota pays. Every
  workload fits its team's nominal quota.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from plinth.scheduler.model import Group, Node, Role, Workload
from plinth.scheduler.resources import Resources

GIB = 1024
CPU_NODE = Resources(64, 256 * GIB, 0)
GPU_NODE = Resources(96, 768 * GIB, 8)


def make_nodes(n: int, gpu_fraction: float = 0.25) -> tuple[Node, ...]:
    """``n`` nodes, the first ``gpu_fraction`` of them GPU nodes."""
    n_gpu = round(n * gpu_fraction)
    return tuple(
        Node(f"gpu-{i:04d}", GPU_NODE) if i < n_gpu else Node(f"cpu-{i:04d}", CPU_NODE)
        for i in range(n)
    )


def make_groups(nodes: tuple[Node, ...], n: int, oversubscribe: float = 1.0,
                lend_all: bool = False) -> tuple[Group, ...]:
    """``n`` groups whose nominal quotas split the cluster (times ``oversubscribe``).

    Each lends half its nominal and borrows up to its nominal again; with
    ``lend_all`` it lends all of it and may borrow without limit (Kueue's
    defaults), bounded only by what the others leave idle.
    """
    tot_c = sum(x.capacity.cpu for x in nodes) * oversubscribe
    tot_m = sum(x.capacity.memory for x in nodes) * oversubscribe
    tot_g = sum(x.capacity.gpu for x in nodes) * oversubscribe
    weights = [1.0 / (i + 1) ** 0.6 for i in range(n)]
    s = sum(weights)
    out = []
    for i, w in enumerate(weights):
        f = w / s
        nom = Resources(round(tot_c * f, 1), int(tot_m * f), int(tot_g * f))
        out.append(Group(
            name=f"team{i:02d}",
            nominal=nom,
            lend_limit=None if lend_all else Resources(nom.cpu / 2, nom.memory // 2, nom.gpu // 2),
            borrow_limit=None if lend_all else nom,
        ))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TraceItem:
    """A workload of the trace: submitted at ``arrival``, runs ``actual_s`` if
    never preempted (at most its declared ``max_runtime_s``)."""

    workload: Workload
    arrival: float
    actual_s: float


def _roles(rng: random.Random) -> tuple[str, tuple[Role, ...]]:
    x = rng.random()
    if x < 0.55:
        per = rng.choice([2, 4, 8, 16, 32, 64])
        mem_per = rng.choice([2, 4, 4]) * GIB
        reps = rng.choice([1, 2, 4, 8])
        return "job", (Role("worker", reps, Resources(per, per * mem_per, 0)),)
    if x < 0.85:
        g = rng.choice([1, 2, 4, 8, 8])
        reps = rng.choice([1, 1, 2, 4])
        return "job", (Role("worker", reps, Resources(12 * g, 96 * GIB * g, g)),)
    if rng.random() < 0.25:
        return "notebook", (Role("main", 1, Resources(8, 64 * GIB, 1)),)
    c = rng.choice([2, 4])
    return "notebook", (Role("main", 1, Resources(c, c * 4 * GIB, 0)),)


def _runtime(rng: random.Random) -> tuple[float, float]:
    declared = math.exp(rng.uniform(math.log(600), math.log(86400)))
    declared = round(declared / 60) * 60.0
    actual = declared if rng.random() < 0.1 else declared * rng.betavariate(2, 2)
    return declared, max(60.0, actual)


def _priority(rng: random.Random) -> str:
    x = rng.random()
    return "high" if x < 0.1 else ("normal" if x < 0.8 else "low")


def random_workload(rng: random.Random, wid: str, group: str, user: str, *,
                    queue_time: float, seq: int) -> tuple[Workload, float]:
    """One workload of the mix above, and its actual runtime in seconds."""
    kind, roles = _roles(rng)
    declared, actual = _runtime(rng)
    w = Workload(id=wid, group=group, user=user, roles=roles, max_runtime_s=declared,
                 queue_time=queue_time, kind=kind, priority=_priority(rng), seq=seq)
    return w, actual


def make_state(
    *, pending: int, nodes: int = 1000, groups: int = 50, seed: int = 0, fill: float = 0.9,
    now: float = 1_000_000.0,
) -> tuple[tuple[Node, ...], tuple[Group, ...], tuple[Workload, ...], tuple[Workload, ...]]:
    """A busy cluster: running work filling about ``fill`` of the nodes (placed
    first-fit, within quotas) and ``pending`` queued workloads.

    Returns ``(nodes, groups, running, pending)``.
    """
    from plinth.scheduler.cycle import schedule
    from plinth.scheduler.model import Snapshot

    rng = random.Random(seed)
    ns = make_nodes(nodes)
    gs = make_groups(ns, groups)
    # Fill the cluster the way the scheduler would: admit a large batch into
    # the empty cluster, so that running work respects quotas and placement.
    cap_gpu = sum(n.capacity.gpu for n in ns)
    batch = []
    for j in range(int(nodes * 12 * fill)):
        g = gs[rng.randrange(groups)]
        w, _ = random_workload(rng, f"r{j}", g.name, f"{g.name}-u{rng.randrange(5)}",
                               queue_time=now - 86400 - rng.uniform(0, 3600), seq=j)
        batch.append(w)
    d = schedule(Snapshot(now=now - 86400, nodes=ns, groups=gs, pending=tuple(batch)))
    by_id = {w.id: w for w in batch}
    running: list[Workload] = []
    gpu_used = 0.0
    for a in d.admissions:
        w = by_id[a.workload_id]
        if cap_gpu and gpu_used + w.total_t[2] > fill * cap_gpu and w.total_t[2] > 0:
            continue
        gpu_used += w.total_t[2]
        start = now - rng.uniform(0, w.max_runtime_s)
        running.append(Workload(
            id=w.id, group=w.group, user=w.user, roles=w.roles, max_runtime_s=w.max_runtime_s,
            queue_time=start - 60, kind=w.kind, priority=w.priority, seq=w.seq,
            start_time=start, placements=a.placement,
        ))
    pend = []
    for j in range(pending):
        g = gs[min(int(rng.paretovariate(1.2)) - 1, groups - 1)] if rng.random() < 0.5 \
            else gs[rng.randrange(groups)]
        w, _ = random_workload(rng, f"p{j}", g.name, f"{g.name}-u{rng.randrange(5)}",
                               queue_time=now - rng.uniform(0, 6 * 3600), seq=100_000 + j)
        pend.append(w)
    return ns, gs, tuple(running), tuple(pend)


def _fit_to(w: Workload, limit: Resources, rng: random.Random) -> Workload | None:
    """``w`` with fewer replicas until it fits ``limit``, or None."""
    roles = list(w.roles)
    while True:
        total = Resources()
        for r in roles:
            total = total + r.resources * r.replicas
        if total.fits_in(limit):
            return replace(w, roles=tuple(roles))
        k = max(range(len(roles)), key=lambda j: roles[j].replicas)
        if roles[k].replicas <= 1:
            return None
        roles[k] = replace(roles[k], replicas=roles[k].replicas - 1)


def _arrivals(groups: tuple[Group, ...], hours: float, rate: float, seed: int,
              quiet_h: float, busy_h: float) -> list[TraceItem]:
    rng = random.Random(seed)
    items: list[TraceItem] = []
    horizon = hours * 3600.0
    seq = 0
    biggest = max(max(x.nominal.gpu for x in groups), 1)
    for g in groups:
        # Bigger teams submit proportionally more.
        scale = max(0.2, g.nominal.gpu / biggest)
        t = rng.expovariate(1.0 / (quiet_h * 3600.0)) * rng.random()
        while t < horizon:
            busy_end = t + rng.expovariate(1.0 / (busy_h * 3600.0))
            while True:
                t += rng.expovariate(rate * scale / 3600.0)
                if t >= busy_end or t >= horizon:
                    break
                for _ in range(20):  # a team only submits work its nominal quota can hold
                    seq += 1
                    w, actual = random_workload(
                        rng, f"{g.name}-{seq}", g.name, f"{g.name}-u{rng.randrange(4)}",
                        queue_time=t, seq=seq)
                    fitted = _fit_to(w, g.nominal, rng)
                    if fitted is not None:
                        items.append(TraceItem(fitted, t, actual))
                        break
            t = busy_end + rng.expovariate(1.0 / (quiet_h * 3600.0))
    items.sort(key=lambda it: (it.arrival, it.workload.seq))
    return items


def offered_load(items: list[TraceItem], nodes: tuple[Node, ...], hours: float) -> float:
    """Submitted work that falls inside the horizon (dominant share of the cluster x
    actual seconds, each run cut at the horizon), over the horizon."""
    cap = [sum(n.capacity.as_tuple()[k] for n in nodes) for k in range(3)]
    horizon = hours * 3600.0
    work = sum(
        max(it.workload.total_t[k] / cap[k] for k in range(3) if cap[k])
        * min(it.actual_s, horizon - it.arrival)
        for it in items
    )
    return work / horizon


def make_trace(
    *, nodes: tuple[Node, ...], groups: tuple[Group, ...], hours: float, load: float,
    seed: int = 0, quiet_h: float = 6.0, busy_h: float = 2.0,
) -> list[TraceItem]:
    """Arrivals over ``hours`` offering about ``load`` times the cluster's capacity.

    Each group alternates quiet (mean ``quiet_h``) and busy (mean ``busy_h``)
    periods and submits only while busy, at a Poisson rate proportional to its
    GPU quota; the rate is calibrated (one trial run with the same seed) so
    that submitted work, counted up to the horizon, is ``load`` x capacity. Every workload
    fits its group's nominal quota (replicas are dropped until it does).
    Sorted by arrival time.
    """
    trial = _arrivals(groups, hours, 10.0, seed, quiet_h, busy_h)
    base = offered_load(trial, nodes, hours) or 1.0
    return _arrivals(groups, hours, 10.0 * load / base, seed, quiet_h, busy_h)
