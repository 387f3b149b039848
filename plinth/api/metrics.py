"""Prometheus metrics, computed from the database at scrape time (own registry per app)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from plinth.scheduler.resources import Resources
from plinth.services.admit_at_submit import OUTCOMES
from plinth.services.control_loop import ControlLoop
from plinth.services.lifecycle import State
from plinth.services.status import resources_in_use, workload_counts
from plinth.store.db import Database

__all__ = ["make_registry"]


class _PlinthCollector(Collector):
    def __init__(self, db: Database, loop: ControlLoop) -> None:
        self.db = db
        self.loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self.db.read() as s:
            by_state = workload_counts(s)
            in_use = resources_in_use(s)
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


def make_registry(db: Database, loop: ControlLoop) -> CollectorRegistry:
    """A fresh registry (so several apps in one process never share metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_PlinthCollector(db, loop))
    return reg
