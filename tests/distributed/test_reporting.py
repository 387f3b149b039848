"""The metrics reporter posts batched points with the workload token, is a no-op without the
platform's environment, and never raises or blocks when the server fails."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from plinth.train.reporting import MetricsReporter


class _Recorder(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    bodies: ClassVar[list[dict[str, Any]]] = []
    auth: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append({"path": self.path, **body})
        type(self).auth.append(self.headers.get("Authorization", ""))
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"accepted": len(body["points"])}).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"bodies": [], "auth": [], "status": 200})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        th.join()


def test_points_are_posted_in_batches_with_the_token(api) -> None:
    url, handler = api
    r = MetricsReporter(url, "tok", "job-1", interval_s=3600)
    for step in range(1, 1503):
        r.report("worker", 1, step, {"loss": 0.5, "samples_per_s": 10.0,
                                     "bad name!": 1.0, "auc": float("nan")})
    r.close()
    assert [len(b["points"]) for b in handler.bodies] == [1000, 502]
    assert {b["path"] for b in handler.bodies} == {"/api/v1/jobs/job-1/metrics"}
    assert set(handler.auth) == {"Bearer tok"}
    p = handler.bodies[0]["points"][0]
    assert p["role"] == "worker" and p["replica"] == 1 and p["step"] == 1
    assert p["values"] == {"loss": 0.5, "samples_per_s": 10.0}


def test_failing_posts_warn_once_and_never_raise(api, caplog) -> None:
    url, handler = api
    handler.status = 500
    r = MetricsReporter(url, "tok", "job-1", interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="plinth.train.reporting"):
        for _ in range(3):
            r.report("worker", 0, 1, {"loss": 1.0})
            r.flush()
        r.close()
    assert r.failed_posts == 3
    assert len([m for m in caplog.messages if "posting training metrics failed" in m]) == 1


def test_unreachable_server_does_not_raise() -> None:
    r = MetricsReporter("http://127.0.0.1:9", "tok", "job", interval_s=3600, timeout_s=0.5)
    r.report("ps", 0, 0, {"rows": 1.0})
    r.close()
    assert r.failed_posts == 1 and r.posted == 0


def test_without_the_environment_it_is_a_no_op(monkeypatch) -> None:
    for k in ("PLINTH_URL", "PLINTH_TOKEN", "PLINTH_WORKLOAD_ID"):
        monkeypatch.delenv(k, raising=False)
    r = MetricsReporter.from_env()
    assert not r.enabled
    r.report("worker", 0, 1, {"loss": 1.0})
    r.close()


@pytest.mark.slow
def test_workers_and_shards_report_their_series(api, ps_data, tmp_path) -> None:
    """A worker reports step, loss, held-out AUC and samples/s; a shard run by its
    entrypoint (``python -m plinth.sparse.server``) reports rows, bytes and requests/s."""
    import os
    import re
    import subprocess
    import sys

    from plinth.train.config import load_config
    from plinth.train.distributed import Cluster, DistributedTrainer

    from .conftest import small_config

    url, handler = api
    env = {**os.environ, "PLINTH_URL": url, "PLINTH_TOKEN": "tok", "PLINTH_WORKLOAD_ID": "j",
           "PLINTH_ROLES": json.dumps({"ps": ["127.0.0.1:0"]}), "PLINTH_REPLICA": "0",
           "PLINTH_PORT": "0",
           "PLINTH_PARAMS": json.dumps({"config": {"distributed": {"metrics_every_s": 0.2}}})}
    shard = subprocess.Popen([sys.executable, "-m", "plinth.sparse.server"], env=env,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert shard.stderr is not None
        port = int(re.search(r"serving on [\d.]+:(\d+)", shard.stderr.readline()).group(1))
        cfg = load_config(small_config(ps_data, tmp_path, export={"package": False},
                                       distributed={"metrics_every_steps": 3}))
        reporter = MetricsReporter(url, "tok", "j", interval_s=3600)
        tr = DistributedTrainer(cfg, Cluster((f"127.0.0.1:{port}",)), log=lambda m: None,
                                reporter=reporter)
        tr.fit()  # ends by telling the shard to shut down
        tr.close()  # flushes the worker's points
        assert shard.wait(timeout=60) == 0
    finally:
        if shard.poll() is None:
            shard.kill()
    points = [p for b in handler.bodies for p in b["points"]]
    worker = [p for p in points if p["role"] == "worker"]
    ps = [p for p in points if p["role"] == "ps"]
    assert [p["step"] for p in worker][:3] == [3, 6, 9]
    assert {"loss", "samples_per_s", "auc"} <= set(worker[0]["values"])
    assert ps and {"rows", "bytes", "requests_per_s"} <= set(ps[-1]["values"])
    assert max(p["values"]["rows"] for p in ps) > 0

