"""Control-plane benchmark: submit throughput and submit-to-running latency.

Starts a real ``plinth server`` on loopback with a fresh SQLite home and one
large declared node (so every trivial job fits at once), then measures:

* ``submit_per_s`` — N trivial jobs POSTed through the API by a few threads
  sharing one SDK client, divided by the wall time of those POSTs (the server
  launches them meanwhile); ``submit_queued_per_s`` is the same while another
  job holds the whole node, so they stay pending: the API's and scheduler's own cost;
* ``latency_p50_s`` / ``latency_p99_s`` — submit-to-running as the server
  recorded it (``started_at - created_at``), one job at a time so each is
  measured on an otherwise idle control plane; ``client_latency_*`` is the
  same as seen by the client (POST sent until a GET shows it started);
  ``burst_latency_*`` is the server-recorded latency of the N burst jobs;
* ``bare_start_p50_s`` — the baseline, in the same run: the cost of
  ``subprocess.Popen`` of the same command (until Popen returns, i.e. the
  child has exec'd); ``bare_run_p50_s`` is Popen until that command exited,
  and ``latency_p50_over_bare_run`` the ratio against that second baseline;
* ``server_cpu_per_queued_submit_s`` / ``server_cpu_per_launched_job_s`` — the server
  process's CPU time (user + system, from /proc) per job over the queued burst, and
  over the launching burst until every job started: steadier than rates on a loaded
  machine, since it does not count time the server waited for a core.

Targets (issue 2): ``latency_p50_s`` under 5x ``bare_start_p50_s`` and
``submit_per_s`` >= 200. Prints one JSON object with ``--json``; ``--quick``
uses small sizes (a smoke test). Times are seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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
SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
# One node big enough that all burst jobs are admitted at once (memory in MiB).
CONFIG = {"nodes": [{"name": "bench", "cpu": 4096, "memory": 4 * 1024 * 1024, "gpu": 0}]}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def job_spec(name: str, *, cpu: float = 0.1, command: list[str] = COMMAND) -> dict[str, Any]:
    return {
        "name": name,
        "max_runtime": 300,
        "roles": {
            "main": {"replicas": 1, "resources": {"cpu": cpu, "memory": 16}, "command": command}
        },
    }


def recorded_latency(job: dict[str, Any]) -> float | None:
    if not job.get("started_at") or not job.get("created_at"):
        return None
    return (parse_time(job["started_at"]) - parse_time(job["created_at"])).total_seconds()


def wait_all_started(client: Client, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Poll until every job has started (or ended); return them. Raises on timeout."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids):
        for job in client.jobs.list(limit=len(ids) + 100):
            if job["id"] in ids and (job.get("started_at") or job.get("state") in TERMINAL_STATES):
                done[job["id"]] = dict(job)
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(done)} of {len(ids)} jobs started in {timeout:g}s")
        time.sleep(0.1)
    return [done[i] for i in ids]


def wait_all_finished(client: Client, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while time.monotonic() < deadline:
        jobs = client.jobs.list(limit=len(ids) + 100)
        if all(j["state"] in TERMINAL_STATES for j in jobs if j["id"] in wanted):
            return
        time.sleep(0.2)


def measure_burst(
    client: Client, count: int, threads: int, *, prefix: str = "burst"
) -> tuple[float, list[str]]:
    """Submit ``count`` jobs from ``threads`` threads; return (seconds, job ids)."""
    names = [f"{prefix}-{i}" for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        jobs = list(pool.map(lambda n: client.jobs.submit(job_spec(n)), names))
    elapsed = time.perf_counter() - started
    return elapsed, [j["id"] for j in jobs]


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_job(before: float | None, after: float | None, count: int) -> float | None:
    if before is None or after is None:
        return None
    return round((after - before) / count, 6)


def measure_queued(
    client: Client, count: int, threads: int, pid: int | None = None
) -> tuple[float | None, float | None]:
    """Submissions/s while a blocker holds the whole node, so that nothing launches.

    That is the API's and the scheduler's own cost, without the CPU that starting
    processes takes. Returns (submissions/s, server CPU s per submission); (None, None)
    when the blocker could not start (e.g. a quota in the way).
    """
    node_cpu = float(CONFIG["nodes"][0]["cpu"])
    blocker = dict(client.jobs.submit(job_spec("blocker", cpu=node_cpu, command=SLEEP)))
    try:
        deadline = time.monotonic() + 30
        while blocker.get("state") != "running":
            if time.monotonic() > deadline or blocker.get("state") in TERMINAL_STATES:
                return None, None
            time.sleep(0.05)
            blocker = dict(client.jobs.get(blocker["id"]))
        cpu0 = process_cpu_s(pid)
        seconds, ids = measure_burst(client, count, threads, prefix="queued")
        cpu = cpu_per_job(cpu0, process_cpu_s(pid), count)
        for job_id in ids:
            client.jobs.cancel(job_id)
        return count / seconds, cpu
    finally:
        client.jobs.cancel(blocker["id"])


def measure_latency(
    client: Client, count: int, poll_s: float = 0.002
) -> tuple[list[float], list[float]]:
    """Submit one job at a time and wait for it to start: (server-recorded, client-seen)."""
    recorded: list[float] = []
    seen: list[float] = []
    for i in range(count):
        t0 = time.perf_counter()
        job = dict(client.jobs.submit(job_spec(f"latency-{i}")))
        deadline = t0 + 60
        while not (job.get("started_at") or job.get("state") in TERMINAL_STATES):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"job {job['id']} did not start within 60s: {job.get('state')}")
            time.sleep(poll_s)
            job = dict(client.jobs.get(job["id"]))
        seen.append(time.perf_counter() - t0)
        latency = recorded_latency(job)
        if latency is not None:
            recorded.append(latency)
        client.jobs.wait(job["id"], timeout=60, poll_interval=0.02)
    return recorded, seen


def measure_bare(count: int) -> tuple[list[float], list[float]]:
    """Popen of COMMAND: (until Popen returns, until the process exited)."""
    starts: list[float] = []
    runs: list[float] = []
    for _ in range(count):
        t0 = time.perf_counter()
        process = subprocess.Popen(COMMAND, stdin=subprocess.DEVNULL)
        t1 = time.perf_counter()
        process.wait()
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        runs.append(t2 - t0)
    return starts, runs


def run(quick: bool) -> dict[str, Any]:
    jobs = 20 if quick else 200
    latency_samples = 5 if quick else 50
    bare_samples = 10 if quick else 100
    threads = 4
    home = Path(tempfile.mkdtemp(prefix="plinth-bench-"))
    try:
        bare_starts, bare_runs = measure_bare(bare_samples)
        with (
            LocalServer(home, config=CONFIG, admin_token=ADMIN_TOKEN) as server,
            Client(server.url, ADMIN_TOKEN) as client,
        ):
            pid = server.process.pid if server.process is not None else None
            client.jobs.submit(job_spec("warmup"))  # first-request costs stay out
            queued_per_s, queued_cpu = measure_queued(client, jobs, threads, pid)
            cpu0 = process_cpu_s(pid)
            submit_s, burst_ids = measure_burst(client, jobs, threads)
            burst = wait_all_started(client, burst_ids, timeout=300)
            burst_cpu = cpu_per_job(cpu0, process_cpu_s(pid), jobs)
            wait_all_finished(client, burst_ids, timeout=300)
            recorded, seen = measure_latency(client, latency_samples)
            wait_all_finished(client, [j["id"] for j in client.jobs.list()], timeout=120)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    burst_latency = [x for x in (recorded_latency(j) for j in burst) if x is not None]
    bare_start_p50 = statistics.median(bare_starts)
    latency_p50 = percentile(recorded, 50)
    submit_per_s = jobs / submit_s
    ratio = latency_p50 / bare_start_p50 if bare_start_p50 > 0 else float("inf")
    return {
        "benchmark": "control_plane",
        "quick": quick,
        "database": "sqlite",
        "command": COMMAND,
        "jobs": jobs,
        "threads": threads,
        "submit_s": round(submit_s, 4),
        "submit_per_s": round(submit_per_s, 1),
        "submit_queued_per_s": None if queued_per_s is None else round(queued_per_s, 1),
        "server_cpu_per_queued_submit_s": queued_cpu,
        "server_cpu_per_launched_job_s": burst_cpu,
        "latency_samples": len(recorded),
        "latency_p50_s": round(latency_p50, 5),
        "latency_p99_s": round(percentile(recorded, 99), 5),
        "client_latency_p50_s": round(percentile(seen, 50), 5),
        "client_latency_p99_s": round(percentile(seen, 99), 5),
        "burst_latency_p50_s": round(percentile(burst_latency, 50), 5),
        "burst_latency_p99_s": round(percentile(burst_latency, 99), 5),
        "bare_start_p50_s": round(bare_start_p50, 6),
        "bare_run_p50_s": round(statistics.median(bare_runs), 5),
        "latency_p50_over_bare_start": round(ratio, 2),
        "latency_p50_over_bare_run": round(latency_p50 / statistics.median(bare_runs), 2),
        "meets_latency_target": ratio < 5.0,
        "meets_submit_target": submit_per_s >= 200.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    result = run(args.quick)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
