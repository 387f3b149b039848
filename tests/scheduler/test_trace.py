"""The simulation's trace generator: quotas that split the cluster, and an
offered load that means what it says (same units as the utilisation)."""

from __future__ import annotations

import itertools

import pytest

from plinth.scheduler.trace import (
    make_groups,
    make_nodes,
    make_trace,
    offered_by_resource,
    offered_load,
)


@pytest.mark.parametrize("n_nodes,n_groups", [(64, 8), (24, 4), (1000, 50), (10, 7)])
def test_quotas_add_up_to_the_cluster(n_nodes: int, n_groups: int) -> None:
    nodes = make_nodes(n_nodes)
    groups = make_groups(nodes, n_groups, lend_all=True)
    assert sum(g.nominal.gpu for g in groups) == sum(n.capacity.gpu for n in nodes)
    assert sum(g.nominal.memory for g in groups) == sum(n.capacity.memory for n in nodes)
    assert sum(g.nominal.cpu for g in groups) == pytest.approx(
        sum(n.capacity.cpu for n in nodes), abs=0.1 * n_groups)
    # Zipf-like: the first team is the largest.
    assert groups[0].nominal.gpu == max(g.nominal.gpu for g in groups)


@pytest.mark.parametrize("seed", [1, 2])
def test_offered_load_is_calibrated_in_utilisation_units(seed: int) -> None:
    nodes = make_nodes(64)
    groups = make_groups(nodes, 8, lend_all=True)
    trace = make_trace(nodes=nodes, groups=groups, hours=48, load=1.5, seed=seed)
    got = offered_load(trace, nodes, 48)
    assert got == pytest.approx(1.5, rel=0.02)
    cpu, _, gpu = offered_by_resource(trace, nodes, 48)
    assert got == pytest.approx((cpu + gpu) / 2)
    # Every workload fits its team's nominal quota.
    nominal = {g.name: g.nominal for g in groups}
    assert all(it.workload.total.fits_in(nominal[it.workload.group]) for it in trace)


def test_trace_is_deterministic_and_more_load_adds_work() -> None:
    nodes = make_nodes(24)
    groups = make_groups(nodes, 4, lend_all=True)
    a = make_trace(nodes=nodes, groups=groups, hours=12, load=1.0, seed=3)
    b = make_trace(nodes=nodes, groups=groups, hours=12, load=1.0, seed=3)
    assert [(it.workload.id, it.arrival, it.actual_s) for it in a] == \
        [(it.workload.id, it.arrival, it.actual_s) for it in b]
    heavy = make_trace(nodes=nodes, groups=groups, hours=12, load=2.0, seed=3)
    assert offered_load(heavy, nodes, 12) > offered_load(a, nodes, 12)
    assert all(x.arrival <= y.arrival for x, y in itertools.pairwise(a))
