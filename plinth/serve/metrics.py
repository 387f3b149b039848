"""The serving process's Prometheus metrics (own registry per app, so tests can run many)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from plinth.serve.batcher import Batcher
from plinth.serve.host import ModelHost

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class _StateCollector(Collector):
    """Model version, last delta and queue depth, read at scrape time."""

    def __init__(self, host: ModelHost, batcher: Batcher) -> None:
        self.host, self.batcher = host, batcher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily("plinth_serve_model_info", "The version being served (1)",
                                 labels=["model", "version"])
        info.add_metric([self.host.name, self.host.version], 1)
        yield info
        yield GaugeMetricFamily("plinth_serve_delta_seq",
                                "Sequence number of the last delta applied (0: none)",
                                value=self.host.delta_seq)
        yield GaugeMetricFamily("plinth_serve_last_delta_timestamp_seconds",
                                "Unix time the last delta was applied (0: none)",
                                value=self.host.last_delta_time or 0)
        yield GaugeMetricFamily("plinth_serve_queue_rows", "Rows waiting for a batch",
                                value=self.batcher.queued_rows)


class ServeMetrics:
    """Counters and histograms the app updates, plus the state collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("plinth_serve_requests", "Requests by endpoint and status",
                                ["endpoint", "code"], registry=self.registry)
        self.latency = Histogram("plinth_serve_request_seconds",
                                 "Time from a request's arrival to its answer (seconds)",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("plinth_serve_batch_rows", "Rows per batch run",
                                    buckets=_ROW_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("plinth_serve_batch_requests", "Requests per batch run",
                                        buckets=_ROW_BUCKETS, registry=self.registry)

    def watch(self, host: ModelHost, batcher: Batcher) -> None:
        self.registry.register(_StateCollector(host, batcher))

    def on_batch(self, requests: int, rows: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)
