"""Seeded synthetic clusters, scheduler states and multi-team traces.

Used by ``benchmarks/scheduler_cycle.py`` (a state: nodes, groups, running
and pending work) and ``benchmarks/scheduler_sim.py`` (a trace: workloads
arriving over time). Pure and deterministic for a given seed.

The generator, in words:

* **Cluster**: ``nodes`` machines, a quarter of them GPU nodes (8 GPUs,
  96 cores, 768 GiB), the rest CPU nodes (64 cores, 256 GiB).
* **Groups**: ``groups`` teams whose nominal quotas split the cluster with
  Zipf-like weights (a few big teams, many small ones), rounded so that
  they add up to the whole cluster (largest remainder for GPUs and memory);
  each may lend half of its nominal and borrow up to its nominal again.
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
  trace offers ``load`` times the cluster's capacity, measured like the
  utilisation: mean of cpu and gpu; each team draws its periods, its
  arrival gaps and its workloads from three seeded streams of its own, so
  the calibration only rescales the arrival gaps), so teams burst at
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
    fr = [w / s for w in weights]
    # Integer resources (memory MiB, GPUs) are split by largest remainder, so
    # the quotas add up to the whole cluster: truncating each share would
    # leave devices in nobody's quota, which no policy could ever use.
    mem = _split(int(tot_m), fr)
    gpu = _split(int(tot_g), fr)
    out = []
    for i, f in enumerate(fr):
        nom = Resources(round(tot_c * f, 1), mem[i], gpu[i])
        out.append(Group(
            name=f"team{i:02d}",
            nominal=nom,
            lend_limit=None if lend_all else Resources(nom.cpu / 2, nom.memory // 2, nom.gpu // 2),
            borrow_limit=None if lend_all else nom,
        ))
    return tuple(out)


def _split(total: int, fractions: list[float]) -> list[int]:
    """``total`` split in proportion to ``fractions`` (summing to 1) into integers
    that add up to ``total`` (largest remainder; ties to the earlier group)."""
    exact = [total * f for f in fractions]
    out = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


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
    # Three random streams per team: its quiet/busy periods, its inter-arrival
    # draws and its workloads. Scaling ``rate`` then only compresses the
    # arrival times inside the same busy periods and appends workloads to the
    # same sequence, so offered load grows smoothly with the rate and the
    # calibration in make_trace converges (with one shared stream, every rate
    # gave an unrelated trace and the offered load missed its target by up
    # to 50%).
    items: list[TraceItem] = []
    horizon = hours * 3600.0
    biggest = max(max(x.nominal.gpu for x in groups), 1)
    for gi, g in enumerate(groups):
        periods = random.Random(f"{seed}/{gi}/periods")
        gaps = random.Random(f"{seed}/{gi}/arrivals")
        rng = random.Random(f"{seed}/{gi}/workloads")
        seq = gi * 1_000_000
        # Bigger teams submit proportionally more.
        scale = max(0.2, g.nominal.gpu / biggest)
        t = periods.expovariate(1.0 / (quiet_h * 3600.0)) * periods.random()
        a = t
        while t < horizon:
            busy_end = t + periods.expovariate(1.0 / (busy_h * 3600.0))
            a = t
            while True:
                a += gaps.expovariate(1.0) * 3600.0 / (rate * scale)
                if a >= busy_end or a >= horizon:
                    break
                for _ in range(20):  # a team only submits work its nominal quota can hold
                    seq += 1
                    w, actual = random_workload(
                        rng, f"{g.name}-{seq}", g.name, f"{g.name}-u{rng.randrange(4)}",
                        queue_time=a, seq=seq)
                    fitted = _fit_to(w, g.nominal, rng)
                    if fitted is not None:
                        items.append(TraceItem(fitted, a, actual))
                        break
            t = busy_end + periods.expovariate(1.0 / (quiet_h * 3600.0))
    items.sort(key=lambda it: (it.arrival, it.workload.seq))
    return items


def offered_by_resource(items: list[TraceItem], nodes: tuple[Node, ...],
                        hours: float) -> tuple[float, float, float]:
    """Submitted cpu, memory and gpu work that falls inside the horizon (each
    run's actual seconds cut at the horizon), over the capacity-seconds of the
    horizon: the utilisation each resource would reach if all of it ran."""
    cap = [sum(n.capacity.as_tuple()[k] for n in nodes) for k in range(3)]
    horizon = hours * 3600.0
    work = [0.0, 0.0, 0.0]
    for it in items:
        d = max(0.0, min(it.actual_s, horizon - it.arrival))
        for k in range(3):
            work[k] += it.workload.total_t[k] * d
    return tuple(work[k] / (cap[k] * horizon) if cap[k] else 0.0 for k in range(3))  # type: ignore[return-value]


def offered_load(items: list[TraceItem], nodes: tuple[Node, ...], hours: float) -> float:
    """Offered load in the units of the simulation's utilisation: the mean over
    cpu and gpu of :func:`offered_by_resource` (on a cluster without GPUs, cpu).

    (An earlier version summed each workload's dominant share. On a cluster
    where GPU gangs dominate on gpu and CPU jobs on cpu, that sum counts each
    resource's demand against the whole cluster and reported "1.5" for a
    trace that offered each resource only 0.8-1.0 of its capacity, so an
    "overloaded" trace could not fill the cluster under any policy.)
    """
    cpu, _, gpu = offered_by_resource(items, nodes, hours)
    has_gpu = any(n.capacity.gpu for n in nodes)
    return (cpu + gpu) / 2 if has_gpu else cpu


def make_trace(
    *, nodes: tuple[Node, ...], groups: tuple[Group, ...], hours: float, load: float,
    seed: int = 0, quiet_h: float = 6.0, busy_h: float = 2.0,
) -> list[TraceItem]:
    """Arrivals over ``hours`` offering about ``load`` times the cluster's capacity.

    Each group alternates quiet (mean ``quiet_h``) and busy (mean ``busy_h``)
    periods and submits only while busy, at a Poisson rate proportional to its
    GPU quota; the rate is calibrated (one trial run with the same seed) so
    that submitted work, counted up to the horizon, is ``load`` x capacity in
    the units of the utilisation (:func:`offered_load`: mean of cpu and gpu). Every workload
    fits its group's nominal quota (replicas are dropped until it does).
    Sorted by arrival time.
    """
    # Secant-free calibration: offered load is close to proportional to the
    # rate, so rescale until it is within 2% of the target (a few rounds).
    rate = 10.0
    items = _arrivals(groups, hours, rate, seed, quiet_h, busy_h)
    for _ in range(8):
        got = offered_load(items, nodes, hours)
        if got <= 0 or abs(got - load) <= 0.02 * load:
            break
        rate *= load / got
        items = _arrivals(groups, hours, rate, seed, quiet_h, busy_h)
    return items
