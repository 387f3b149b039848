"""Prometheus metrics, computed from the database at scrape time (own registry per app)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from plinth.services.control_loop import LIVE_REPLICA_STATES, ControlLoop
from plinth.services.lifecycle import State
from plinth.store.db import Database
from plinth.store.models import Replica, Workload

__all__ = ["make_registry"]


class _PlinthCollector(Collector):
    def __init__(self, db: Database, loop: ControlLoop) -> None:
        self.db = db
        self.loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self.db.read() as s:
            by_state = dict(
                s.execute(select(Workload.state, func.count()).group_by(Workload.state)).all()
            )
            res = s.execute(
                select(Replica.resources).where(Replica.state.in_(LIVE_REPLICA_STATES))
            ).scalars()
            cpu = mem = gpu = 0.0
            for r in res:
                cpu += float(r.get("cpu", 0))
                mem += float(r.get("memory", 0))
                gpu += float(r.get("gpu", 0))
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
        used.add_metric(["cpu"], cpu)
        used.add_metric(["memory"], mem)
        used.add_metric(["gpu"], gpu)
        yield used
        cap = GaugeMetricFamily(
            "plinth_resources_capacity", "Total capacity of all nodes", labels=["resource"]
        )
        cap.add_metric(["cpu"], sum(n.cpu for n in self.loop.nodes))
        cap.add_metric(["memory"], sum(n.memory_mib for n in self.loop.nodes))
        cap.add_metric(["gpu"], sum(n.gpu for n in self.loop.nodes))
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
        for outcome in ("admitted", "left", "burst", "busy", "stale"):
            on_submit.add_metric([outcome], self.loop.on_submit.get(outcome, 0))
        yield on_submit


def make_registry(db: Database, loop: ControlLoop) -> CollectorRegistry:
    """A fresh registry (so several apps in one process never share metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_PlinthCollector(db, loop))
    return reg
