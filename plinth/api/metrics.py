"""Prometheus metrics, computed from the database at scrape time (own registry per app)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from plinth import scheduler as core
from plinth.scheduler.resources import Resources
from plinth.services.admit_at_submit import OUTCOMES
from plinth.services.control_loop import ControlLoop
from plinth.services.lifecycle import State
from plinth.services.status import group_quotas, resources_in_use, workload_counts
from plinth.store.db import Database

__all__ = ["make_registry"]


class _PlinthCollector(Collector):
    def __init__(self, db: Database, loop: ControlLoop) -> None:
        self.db = db
        self.loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        with self.db.read() as s:
            by_state = workload_counts(s)
            in_use = resources_in_use(s)
            groups = group_quotas(s, self.loop.nodes)
        yield from _group_gauges(groups)
        yield from self._cycle_metrics()
        yield GaugeMetricFamily(
            "plinth_queue_length", "Workloads waiting to be admitted",
            value=by_state.get(State.PENDING.value, 0),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "plinth_running_workloads", "Workloads admitted or running",
            value=by_state.get(State.RUNNING.value, 0) + by_state.get(State.ADMITTED.value, 0),
        )  # fmt: skip
        g = GaugeMetricFamily("plinth_workloads", "Workloads by state", labels=["state"])
        for st in State:
            g.add_metric([st.value], by_state.get(st.value, 0))
        yield g
        used = GaugeMetricFamily(
            "plinth_resources_in_use",
            "Resources held by live replicas (cpu: cores, memory: MiB, gpu: devices)",
            labels=["resource"],
        )
        for name, value in in_use.to_dict().items():
            used.add_metric([name], value)
        yield used
        cap = GaugeMetricFamily(
            "plinth_resources_capacity", "Total capacity of all nodes", labels=["resource"]
        )
        total = sum((n.resources for n in self.loop.nodes), Resources())
        for name, value in total.to_dict().items():
            cap.add_metric([name], value)
        yield cap
        yield CounterMetricFamily(
            "plinth_executor_poll_errors",
            "Polls of a replica that raised (the replica was taken as still running)",
            value=self.loop.poll_errors,
        )
        on_submit = CounterMetricFamily(
            "plinth_admit_on_submit",
            "Submissions by what admission at submit did: admitted there, or left to the "
            "control loop (left: the scheduler did not admit it alone; burst: "
            "submissions too close together; busy: the loop was admitting; stale: "
            "something changed since the loop's last read)",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            on_submit.add_metric([outcome], self.loop.on_submit.get(outcome, 0))
        yield on_submit

    def _cycle_metrics(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        stats = self.loop.admission.stats
        h = HistogramMetricFamily(
            "plinth_scheduler_phase_seconds",
            "Duration of each phase of the scheduling cycle (snapshot, heads, nominate, "
            "order, process, requeue)",
            labels=["phase"],
        )
        for phase, hist in sorted(stats.phases().items()):
            h.add_metric([phase], hist.cumulative(), sum_value=hist.total_s)
        yield h
        pre = CounterMetricFamily(
            "plinth_preemptions",
            "Preemptions applied, by kind of reason (reclaim: a lender took its quota back)",
            labels=["reason"],
        )
        for kind, n in sorted(stats.preemptions().items()):
            pre.add_metric([kind], n)
        yield pre


# Gauge name suffix -> (help text, the GroupStatus value it shows).
_GROUP_GAUGES: dict[str, tuple[str, Callable[[core.GroupStatus], Resources]]] = {
    "nominal": ("Nominal quota as configured (effective quota = nominal + expansion)",
                lambda g: (g.nominal - g.expansion).clamp()),
    "expansion": ("Quota added by active temporary expansions", lambda g: g.expansion),
    "used": ("Resources held by the group's running workloads", lambda g: g.used),
    "borrowed": ("Resources used beyond its effective quota (others' idle quota)",
                 lambda g: g.borrowed),
    "lent": ("The group's idle quota used by borrowing groups", lambda g: g.lent),
}  # fmt: skip


def _group_gauges(groups: list[core.GroupStatus]) -> Iterator[GaugeMetricFamily]:
    """plinth_group_quota_<kind>{group, resource} for each kind above."""
    for kind, (doc, value) in _GROUP_GAUGES.items():
        g = GaugeMetricFamily(
            f"plinth_group_quota_{kind}",
            f"{doc} (cpu: cores, memory: MiB, gpu: devices)",
            labels=["group", "resource"],
        )
        for st in groups:
            for resource, amount in value(st).to_dict().items():
                g.add_metric([st.name, resource], amount)
        yield g


def make_registry(db: Database, loop: ControlLoop) -> CollectorRegistry:
    """A fresh registry (so several apps in one process never share metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_PlinthCollector(db, loop))
    return reg
