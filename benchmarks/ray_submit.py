"""Plinth-on-Ray against Ray's own Jobs API: submit-to-running latency and throughput.

One run starts ONE Ray cluster on loopback (``ray.cluster_utils.Cluster``: a head with
the dashboard, which the Jobs API needs, plus ``--workers`` worker nodes, every node on
127.0.0.1 with 2 declared CPUs) and a real ``plinth server`` whose executor is that
cluster (``executor: {kind: ray, ...}``). Both sides launch the same command,
``python -c pass`` (this interpreter), on the same cluster, interleaved:

* ``plinth``: ``POST /api/v1/jobs`` (the SDK) of a one-replica job (0.1 core);
* ``ray_jobs``: ``JobSubmissionClient.submit_job(entrypoint=...)`` against the head's
  dashboard.

Each side reports (times in seconds):

* ``latency_p50_s`` / ``latency_p99_s``: submit-to-running as the client sees it, one
  job at a time on an otherwise idle cluster: from the submit call until a status
  read shows it running or ended (Plinth: ``started_at`` set; Ray: status no longer
  ``PENDING``). Both sides are polled the same way, every ``POLL_S``;
* ``submit_per_s``: ``--burst`` jobs submitted by 4 threads, over the wall time of
  those submit calls;
* ``completed_per_s``: the same burst, over the time from the first submit until every
  job of it ended (all must succeed).

Plinth also reports ``recorded_latency_p50_s`` (``started_at - created_at`` as the
server recorded it). The ratios ``latency_p50_ratio`` (Plinth / Ray; target <= 0.1) and
``completed_per_s_ratio`` (Plinth / Ray; target >= 10) are issue 15's targets, with the
load average before and after (the machine is shared).

Prints one JSON object with ``--json``; ``--quick`` uses tiny sizes (the smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from plinth.cli.local_server import LocalServer
from plinth.client import TERMINAL_STATES, Client

try:
    from benchmarks._stats import percentile
except ImportError:  # run as a script: benchmarks/ is sys.path[0]
    from _stats import percentile

COMMAND = [sys.executable, "-c", "pass"]
ENTRYPOINT = f"{sys.executable} -c pass"
ADMIN_TOKEN = "bench-ray-admin-token-0123456789abcdef"
THREADS = 4
POLL_S = 0.005
#: Ray Jobs' states once a job is no longer PENDING.
RAY_STARTED = {"RUNNING", "SUCCEEDED", "FAILED", "STOPPED"}
RAY_ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
NODE = {"num_cpus": 2, "memory": 2 << 30, "node_ip_address": "127.0.0.1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(workers: int, attempts: int = 3):
    """(cluster, dashboard URL): a head with the dashboard on loopback and `workers`
    worker nodes, each labelled ``plinth-node=<name>``.

    A raylet gives its node's agent 15 s (fixed in Ray) to report its ports and aborts
    the node's start when the agent misses it, which happens on a busy machine: the
    start is tried again, up to `attempts` times."""
    from ray.cluster_utils import Cluster

    for attempt in range(1, attempts + 1):
        port = _free_port()
        cluster = Cluster()
        try:
            cluster.add_node(
                **NODE, labels={"plinth-node": "head"}, include_dashboard=True,
                dashboard_host="127.0.0.1", dashboard_port=port,
            )  # fmt: skip
            for i in range(workers):
                cluster.add_node(**NODE, labels={"plinth-node": f"w{i + 1}"})
        except Exception as e:
            cluster.shutdown()
            if attempt == attempts or "timed out during startup" not in str(e):
                raise
            print(f"ray_submit: starting the cluster failed ({e}); again", file=sys.stderr)
            continue
        return cluster, f"http://127.0.0.1:{port}"
    raise AssertionError("unreachable")


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g}s")
        time.sleep(POLL_S)
    return value


def job_spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "max_runtime": 300,
        "roles": {"main": {"resources": {"cpu": 0.1, "memory": 16}, "command": COMMAND}},
    }


# -- the two sides, behind the same three calls -------------------------------------------


class PlinthSide:
    def __init__(self, client: Client) -> None:
        self.c = client

    def submit(self, name: str) -> str:
        return self.c.jobs.submit(job_spec(name))["id"]

    def started(self, job_id: str) -> bool:
        job = self.c.jobs.get(job_id)
        return bool(job.get("started_at")) or job["state"] in TERMINAL_STATES

    def ended(self, ids: list[str]) -> list[str] | None:
        """The ids' final states once every one ended, else None."""
        want = set(ids)
        jobs = {
            j["id"]: j["state"] for j in self.c.jobs.list(limit=len(ids) + 100) if j["id"] in want
        }
        if len(jobs) == len(want) and all(s in TERMINAL_STATES for s in jobs.values()):
            return list(jobs.values())
        return None

    def recorded_latency(self, job_id: str) -> float | None:
        job = self.c.jobs.get(job_id)
        if not job.get("started_at"):
            return None
        started = datetime.fromisoformat(job["started_at"])
        return (started - datetime.fromisoformat(job["created_at"])).total_seconds()


class RayJobsSide:
    def __init__(self, client: Any) -> None:
        self.c = client

    def submit(self, name: str) -> str:
        return self.c.submit_job(entrypoint=ENTRYPOINT)

    def started(self, job_id: str) -> bool:
        return str(self.c.get_job_status(job_id)) in RAY_STARTED

    def ended(self, ids: list[str]) -> list[str] | None:
        want = set(ids)
        jobs = {
            j.submission_id: str(j.status) for j in self.c.list_jobs() if j.submission_id in want
        }
        if len(jobs) == len(want) and all(s in RAY_ENDED for s in jobs.values()):
            return list(jobs.values())
        return None


SUCCESS = {"plinth": "succeeded", "ray_jobs": "SUCCEEDED"}


def measure_latency(side: Any, name: str, timeout: float) -> tuple[float, str]:
    """(client-seen submit-to-running seconds, job id); waits for the job to end."""
    t0 = time.perf_counter()
    job_id = side.submit(name)
    _wait(f"{name} to start", lambda: side.started(job_id), timeout)
    seen = time.perf_counter() - t0
    _wait(f"{name} to end", lambda: side.ended([job_id]), timeout)
    return seen, job_id


def measure_burst(side: Any, prefix: str, count: int, timeout: float) -> dict[str, Any]:
    names = [f"{prefix}-{i}" for i in range(count)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        ids = list(pool.map(side.submit, names))
    submitted = time.perf_counter() - t0
    states = _wait(f"{count} {prefix} jobs to end", lambda: side.ended(ids), timeout)
    completed = time.perf_counter() - t0
    return {"submit_s": submitted, "completed_s": completed, "states": states}


def run(quick: bool, samples: int, burst: int, workers: int) -> dict[str, Any]:
    from ray.job_submission import JobSubmissionClient

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The Jobs API's agent on the head calls ray.init(address=<GCS>), which turns
    # 127.0.0.1 into this machine's outward IP where a loopback GCS cannot be reached
    # (ray._private.services.resolve_ip_for_localhost) unless this switch is off in the
    # nodes' processes (the Plinth executor does the same for its own ray.init).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # The raylet gives each node's agents 30 s to come up: too little on busy cores.
    os.environ.setdefault("RAY_agent_register_timeout_ms", "180000")
    load_before = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="plinth-bench-ray-"))
    cluster, dashboard = start_cluster(workers)
    try:
        config = {
            "executor": {
                "kind": "ray", "address": cluster.address, "node_ip_address": "127.0.0.1",
                "agent_root": str(home / "agents"),
            },
        }  # fmt: skip
        with (
            LocalServer(home / "server", config=config, admin_token=ADMIN_TOKEN) as server,
            Client(server.url, ADMIN_TOKEN) as client,
        ):
            ray_client = _wait(
                "Ray's Jobs API to answer", lambda: _jobs_client(JobSubmissionClient, dashboard),
                120,
            )  # fmt: skip
            sides = {"plinth": PlinthSide(client), "ray_jobs": RayJobsSide(ray_client)}
            timeout = 300.0
            # Warm-up, left out: Plinth starts each node's agent on first use, Ray its
            # job manager; one job per node for Plinth (it places jobs by free cores).
            for i in range(workers + 1):
                for name, side in sides.items():
                    measure_latency(side, f"warmup-{i}", timeout)
            seen: dict[str, list[float]] = {name: [] for name in sides}
            recorded: list[float] = []
            for i in range(samples):  # interleaved, so machine noise hits both alike
                for name, side in sides.items():
                    latency, job_id = measure_latency(side, f"latency-{i}", timeout)
                    seen[name].append(latency)
                    if name == "plinth" and (r := side.recorded_latency(job_id)) is not None:
                        recorded.append(r)
            bursts = {
                name: measure_burst(side, "burst", burst, timeout) for name, side in sides.items()
            }
    finally:
        cluster.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    out: dict[str, Any] = {"benchmark": "ray_submit", "quick": quick, "command": COMMAND}
    for name in sides:
        b = bursts[name]
        out[name] = {
            "submit_per_s": round(burst / b["submit_s"], 2),
            "completed_per_s": round(burst / b["completed_s"], 2),
            "latency_p50_s": round(percentile(seen[name], 50), 4),
            "latency_p99_s": round(percentile(seen[name], 99), 4),
            "succeeded": sum(s == SUCCESS[name] for s in b["states"]),
        }
    out["plinth"]["recorded_latency_p50_s"] = round(percentile(recorded, 50), 4)
    out["plinth"]["recorded_latency_p99_s"] = round(percentile(recorded, 99), 4)
    p, r = out["plinth"], out["ray_jobs"]
    out["latency_p50_ratio"] = round(p["latency_p50_s"] / r["latency_p50_s"], 4)
    out["completed_per_s_ratio"] = round(p["completed_per_s"] / r["completed_per_s"], 2)
    out["submit_per_s_ratio"] = round(p["submit_per_s"] / r["submit_per_s"], 2)
    out["meets_latency_target"] = out["latency_p50_ratio"] <= 0.1
    out["meets_throughput_target"] = out["completed_per_s_ratio"] >= 10
    out.update({
        "samples": samples, "burst": burst, "nodes": workers + 1, "cpus_per_node": NODE["num_cpus"],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
    })  # fmt: skip
    return out


def _jobs_client(cls: Any, address: str) -> Any:
    """A JobSubmissionClient once the dashboard answers, else None."""
    try:
        return cls(address)
    except (ConnectionError, RuntimeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--samples", type=int, help="latency samples per side (default 30)")
    parser.add_argument("--burst", type=int, help="jobs per side in the burst (default 40)")
    parser.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    args = parser.parse_args(argv)
    samples = args.samples or (3 if args.quick else 30)
    burst = args.burst or (4 if args.quick else 40)
    result = run(args.quick, samples, burst, args.workers)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
