"""Properties that hold for every snapshot: no quota, cap or node is ever
over-admitted; gangs are whole; the core is deterministic and reads no clock."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from plinth.scheduler import PHASES, Reservation, SchedulerConfig, User, schedule

from .builders import HOUR, NOW, group, job, node, res, snapshot

EPS = 1e-6


@st.composite
def snapshots(draw):
    n_nodes = draw(st.integers(1, 5))
    nodes = [node(f"n{i}", draw(st.sampled_from([4, 8, 16])), 64,
                  draw(st.sampled_from([0, 0, 4, 8]))) for i in range(n_nodes)]
    groups = []
    for gi in range(draw(st.integers(1, 3))):
        nom = res(draw(st.integers(0, 16)), 128, draw(st.integers(0, 8)))
        borrow = draw(st.sampled_from([None, res(0, 0, 0), res(4, 64, 2)]))
        lend = draw(st.sampled_from([None, res(2, 64, 1)]))
        groups.append(group(f"g{gi}", nom.cpu, 128, nom.gpu, borrow=borrow, lend=lend))
    users = [User("u0", "g0", cap=res(4, 64, 2))]
    pending = []
    for i in range(draw(st.integers(0, 25))):
        g = draw(st.sampled_from(groups)).name
        b = (job(f"p{i}").group(g).user(draw(st.sampled_from(["u0", "u1", f"{g}-x"])))
             .cpu(draw(st.sampled_from([0.5, 1, 2, 4]))).mem(draw(st.sampled_from([1, 4, 16])))
             .gpus(draw(st.sampled_from([0, 0, 1, 2, 4])))
             .replicas(draw(st.integers(1, 3)))
             .runtime(draw(st.sampled_from([600, HOUR, 10 * HOUR])))
             .queued(NOW - draw(st.integers(0, 10 * HOUR))).seq(i))
        pending.append(b)
    cfg = SchedulerConfig(borrowing=draw(st.booleans()), backfill=draw(st.booleans()))
    # Half the work arrives first and is admitted by a first cycle; the
    # property is checked on the second cycle, over running + admitted work.
    first = draw(st.integers(0, len(pending)))
    reservations = []
    if draw(st.booleans()):
        reservations.append(Reservation("r0", res(2, 8), start=NOW + draw(st.integers(0, 7200)),
                                        end=NOW + 4 * HOUR, group="g0", node="n0"))
    return nodes, groups, users, pending[first:], cfg, pending[:first], reservations


def _check(nodes, groups, users, pending, cfg, earlier=(), reservations=()) -> None:
    s0 = snapshot(nodes=nodes, groups=groups, users=users, pending=earlier, now=NOW - 600)
    d0 = schedule(s0, cfg)
    running = []
    for a in d0.admissions:
        b = next(b for b in earlier if b.id == a.workload_id)
        nodes_of = [n for role in b.build().roles for n in a.placement[role.name]]
        running.append(b.running(*nodes_of, start=NOW - 600))
    s = snapshot(nodes=nodes, groups=groups, users=users, pending=pending, running=running,
                 reservations=reservations)
    d = schedule(s, cfg)
    by_id = {w.id: w for w in s.pending}
    used_node: dict[str, list[float]] = {}
    used_group: dict[str, list[float]] = {}
    used_user: dict[str, list[float]] = {}
    for w in s.running:
        for n, v in w.node_usage().items():
            u = used_node.setdefault(n, [0.0, 0.0, 0.0])
            for k in range(3):
                u[k] += v[k]
        for acc, key in ((used_group, w.group), (used_user, w.user)):
            u = acc.setdefault(key, [0.0, 0.0, 0.0])
            for k, v in enumerate(w.total_t):
                u[k] += v
    for a in d.admissions:
        w = by_id[a.workload_id]
        for role in w.roles:
            assert len(a.placement[role.name]) == role.replicas  # whole gang
            for n in a.placement[role.name]:
                u = used_node.setdefault(n, [0.0, 0.0, 0.0])
                for k, v in enumerate(role.resources.as_tuple()):
                    u[k] += v
        for acc, key in ((used_group, w.group), (used_user, w.user)):
            u = acc.setdefault(key, [0.0, 0.0, 0.0])
            for k, v in enumerate(w.total_t):
                u[k] += v
    for n in nodes:
        u = used_node.get(n.name, [0.0, 0.0, 0.0])
        assert all(u[k] <= n.capacity.as_tuple()[k] + EPS for k in range(3))
    pool_cap = [0.0, 0.0, 0.0]
    pool_used = [0.0, 0.0, 0.0]
    for g in groups:
        u = used_group.get(g.name, [0.0, 0.0, 0.0])
        nom = g.nominal.as_tuple()
        lend = nom if g.lend_limit is None else tuple(
            min(a, b) for a, b in zip(g.lend_limit.as_tuple(), nom, strict=True))
        for k in range(3):
            if not cfg.borrowing:
                limit = nom[k]
            elif g.borrow_limit is None:
                limit = float("inf")
            else:
                limit = nom[k] + g.borrow_limit.as_tuple()[k]
            assert u[k] <= limit + EPS
            pool_cap[k] += lend[k]
            pool_used[k] += max(0.0, u[k] - (nom[k] - lend[k]))
    assert all(pool_used[k] <= pool_cap[k] + EPS for k in range(3))
    cap = users[0].cap.as_tuple()
    u0 = used_user.get("u0", [0.0, 0.0, 0.0])
    u0_admitted = [a for a in d.admissions if by_id[a.workload_id].user == "u0"
                   and by_id[a.workload_id].group == "g0"]
    if u0_admitted:
        assert all(u0[k] <= cap[k] + EPS for k in range(3))
    # Preemptions only hit running work of other groups that borrow.
    running_ids = {w.id: w for w in s.running}
    for p in d.preemptions:
        victim = running_ids[p.workload_id]
        assert victim.group != by_id[p.for_workload].group
        assert cfg.borrowing
    # Held reservation capacity is only used by work ending before it starts:
    # once a non-owner workload that runs past the start is put on the node,
    # everything there that runs past the start still leaves the reservation free.
    for r in reservations:
        def on_n0(placement) -> list[str]:
            return [n for ns in placement.values() for n in ns if n == "n0"]

        late = [a for a in d.admissions if on_n0(a.placement)
                and by_id[a.workload_id].group != "g0"
                and NOW + by_id[a.workload_id].max_runtime_s > r.start]
        if not late:
            continue
        past = [0.0, 0.0, 0.0]
        for w in s.running:
            if w.end_time > r.start:
                for k, v in enumerate(w.node_usage().get("n0", (0.0, 0.0, 0.0))):
                    past[k] += v
        for a in d.admissions:
            w = by_id[a.workload_id]
            if NOW + w.max_runtime_s > r.start:
                for role in w.roles:
                    for n in a.placement[role.name]:
                        if n == "n0":
                            for k, v in enumerate(role.resources.as_tuple()):
                                past[k] += v
        cap0 = nodes[0].capacity.as_tuple()
        assert all(past[k] + r.resources.as_tuple()[k] <= cap0[k] + EPS for k in range(3))
    # Every pending workload is either admitted or has a reason.
    assert set(d.queue) == set(by_id)
    for wid in d.queue:
        assert (wid in d.admitted_ids) != (wid in d.reasons)
    # Deterministic.
    again = schedule(s, cfg)
    assert again.admissions == d.admissions and again.reasons == d.reasons


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_never_over_admits(args) -> None:
    _check(*args)


def test_reads_no_clock(monkeypatch) -> None:
    """``now`` comes from the snapshot; phase timing uses the injected timer."""
    def boom() -> float:
        raise AssertionError("the scheduler core read the wall clock")

    monkeypatch.setattr(time, "time", boom)
    monkeypatch.setattr(time, "monotonic", boom)
    ticks = iter(range(100))
    s = snapshot(nodes=[node("n1")], groups=[group("ads", cpu=4, mem=8)],
                 pending=[job("a"), job("b").cpu(8)])
    d = schedule(s, SchedulerConfig(), timer=lambda: float(next(ticks)))
    assert list(d.phases) == list(PHASES)
    assert all(v == 1.0 for v in d.phases.values())


def test_does_not_modify_its_input() -> None:
    s = snapshot(nodes=[node("n1", 8, 32)], groups=[group("ads", cpu=4, mem=8)],
                 running=[job("r").cpu(2).running("n1")], pending=[job("a"), job("b")])
    before = repr(s)
    schedule(s)
    assert repr(s) == before


def test_empty_snapshot() -> None:
    d = schedule(snapshot(nodes=[], groups=[]))
    assert d.admissions == [] and d.queue == [] and set(d.phases) == set(PHASES)


def test_public_surface_is_pinned() -> None:
    """The server integrates against exactly these names."""
    import plinth.scheduler as s

    assert sorted(s.__all__) == sorted([
        "PHASES", "Admission", "Decisions", "Expansion", "Group", "GroupStatus", "Node",
        "Ordering", "Outcome", "PlacementPolicy", "Preemption", "ReclaimHold", "Reservation",
        "Resources", "Role", "SchedulerConfig", "ScoreBreakdown", "Snapshot", "UsageRecord",
        "User", "Victim", "Weights", "Workload", "config_from_dict", "explain", "group_status", "schedule",
        "user_usage",
    ])
    for name in s.__all__:
        assert getattr(s, name) is not None


@settings(max_examples=100, deadline=None)
@given(snapshots())
def test_capacity_held_for_a_claimant_is_used_by_no_one_else(args) -> None:
    """A reclaim hold (plinth.scheduler.holds): whatever else is admitted, the plan's
    capacity on its node stays free for the claimant (or the claimant takes it)."""
    import dataclasses

    from plinth.scheduler import ReclaimHold

    nodes, groups, users, pending, cfg, _earlier, _res = args
    if not pending:
        return
    s = snapshot(nodes=nodes, groups=groups, users=users, pending=pending)
    claimant = s.pending[0]
    n0 = nodes[0].capacity.as_tuple()
    want = tuple(min(claimant.total_t[k], n0[k]) for k in range(3))
    plan = {nodes[0].name: res(want[0], want[1] / 1024, int(want[2]))}
    held = dataclasses.replace(s, reclaim_holds=(ReclaimHold(
        claimant.id, claimant.group, (), NOW - 1, plan=plan),))
    d = schedule(held, cfg)
    if claimant.id in d.admitted_ids:
        assert d.released_holds == {claimant.id: "its claimant was admitted"}
        return
    by_id = {w.id: w for w in s.pending}
    used = [0.0, 0.0, 0.0]
    for a in d.admissions:
        w = by_id[a.workload_id]
        for role in w.roles:
            for n in a.placement[role.name]:
                if n == nodes[0].name:
                    for k, v in enumerate(role.resources.as_tuple()):
                        used[k] += v
    held_amount = plan[nodes[0].name].as_tuple()
    assert all(used[k] + held_amount[k] <= n0[k] + EPS for k in range(3))
