"""Load benchmark: many concurrent clients against a real server on loopback.

Starts a real ``plinth server`` (SQLite, or a fresh PostgreSQL schema with
``--db postgresql``) with a few quota groups that may not borrow, then runs
``--clients`` threads (each a member of one group, each with its own HTTP client)
for ``--seconds``. Each client loops over a weighted mix of the user's calls:
submit a short job, list its jobs, read a job's log, explain a job, cancel a job.

Reported (one JSON object with ``--json``; times in seconds):

* ``endpoints.<name>``: ``count``, ``p50_s``, ``p99_s``, ``5xx``, ``other_errors``
  (statuses the call should not get, and connection errors);
* ``baseline_healthz_p50_s``: ``GET /healthz`` on the idle server, measured first in
  the same run; ``p50_over_baseline`` per endpoint is the ratio;
* ``total_5xx``, ``over_admission`` (groups and nodes whose replicas ever held more
  than their quota or capacity at once, from the replicas' recorded lifetimes in the
  store), ``submitted``, ``rss_mib_before`` / ``rss_mib_after`` (the server's memory).

``--quick`` is the smoke form (10 clients, 6 s) that the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from plinth.cli.local_server import LocalServer

try:
    from benchmarks._stats import percentile
except ImportError:  # run as a script: benchmarks/ is sys.path[0]
    from _stats import percentile

ADMIN_TOKEN = "bench-load-admin-token-0123456789"
GROUPS = 5
GROUP_CPU = 1.0
JOB_CPU = 0.25
NODE = {"name": "n1", "cpu": 4, "memory": "8Gi"}
#: Operation -> weight in each client's mix.
MIX = {"submit": 30, "list": 25, "logs": 15, "explain": 15, "cancel": 15}
#: Statuses each call may legitimately get besides 2xx (e.g. cancelling a job that has
#: just finished is a 409).
EXPECTED = {"cancel": {409}, "logs": {404}, "explain": set(), "list": set(), "submit": set()}


def _spec(i: int) -> dict[str, Any]:
    return {
        "name": f"load-{i}",
        "max_runtime": 120,
        "roles": {"main": {"resources": {"cpu": JOB_CPU, "memory": 16},
                           "command": ["/bin/sh", "-c", "echo started; sleep 0.5"]}},
    }  # fmt: skip


class Client(threading.Thread):
    """One simulated user: a loop of API calls until the deadline."""

    def __init__(self, url: str, token: str, deadline: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.deadline = deadline
        self.rng = random.Random(seed)
        self.jobs: list[str] = []
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def _call(self, op: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError:
            self.errors[op]["other_errors"] += 1
            return None
        self.latency[op].append(time.perf_counter() - t0)
        if r.status_code >= 500:
            self.errors[op]["5xx"] += 1
        elif r.status_code >= 300 and r.status_code not in EXPECTED[op]:
            self.errors[op]["other_errors"] += 1
        return r

    def run(self) -> None:
        ops, weights = zip(*MIX.items(), strict=True)
        n = 0
        while time.monotonic() < self.deadline:
            op = self.rng.choices(ops, weights)[0]
            if op != "submit" and op != "list" and not self.jobs:
                op = "submit"
            if op == "submit":
                n += 1
                r = self._call(op, "POST", "/api/v1/jobs", json=_spec(n))
                if r is not None and r.status_code == 201:
                    self.jobs.append(r.json()["id"])
            elif op == "list":
                self._call(op, "GET", "/api/v1/jobs", params={"limit": 50})
            else:
                jid = self.rng.choice(self.jobs[-20:])
                path = {"logs": f"/api/v1/jobs/{jid}/logs/main/0",
                        "explain": f"/api/v1/jobs/{jid}/explain",
                        "cancel": f"/api/v1/jobs/{jid}/cancel"}[op]  # fmt: skip
                self._call(op, "POST" if op == "cancel" else "GET", path)
        self.http.close()


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak(intervals: list[tuple[float, float, float]]) -> float:
    """The most held at once by (start, end, amount) intervals (ends before starts)."""
    points = sorted([(s, 1, a) for s, _, a in intervals] + [(e, 0, -a) for _, e, a in intervals])
    held = peak = 0.0
    for _, _, delta in points:
        held += delta
        peak = max(peak, held)
    return peak


def over_admission(db_url: str) -> dict[str, float]:
    """Groups (and nodes) whose recorded replicas held more cpu at once than allowed:
    ``{name: peak}``; empty when there was no over-admission."""
    from sqlalchemy import select

    from plinth.store.db import Database
    from plinth.store.models import Group, Replica, Workload, utcnow

    db = Database(db_url)
    try:
        with db.read() as s:
            quotas = {g.id: (g.name, float((g.quota or {}).get("cpu", 0))) for g in s.scalars(
                select(Group))}  # fmt: skip
            rows = s.execute(
                select(Workload.group_id, Replica.node, Replica.started_at, Replica.finished_at,
                       Replica.resources)
                .join(Workload, Replica.workload_id == Workload.id)
                .where(Replica.started_at.is_not(None))
            ).all()  # fmt: skip
    finally:
        db.dispose()
    now = utcnow().timestamp()
    by_group: dict[int, list] = defaultdict(list)
    by_node: dict[str, list] = defaultdict(list)
    for gid, node, start, end, res in rows:
        item = (start.timestamp(), end.timestamp() if end else now, float(res.get("cpu", 0)))
        by_group[gid].append(item)
        by_node[node].append(item)
    bad = {}
    for gid, items in by_group.items():
        name, quota = quotas[gid]
        if _peak(items) > quota + 1e-9:
            bad[f"group:{name}"] = _peak(items)
    for node, items in by_node.items():
        if _peak(items) > float(NODE["cpu"]) + 1e-9:
            bad[f"node:{node}"] = _peak(items)
    return bad


def _pg_schema(base_url: str) -> tuple[str, Any]:
    import psycopg

    conninfo = base_url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"plinth_load_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}", drop


def run(clients: int, seconds: float, db: str, pg_url: str) -> dict[str, Any]:
    config = {
        "nodes": [NODE],
        "scheduler": {"poll_interval": 0.05},
        "jobs": {"grace": "1s"},
        "retention": {"sweep_interval": "1h"},
    }
    drop = None
    env: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="plinth-load-") as tmp:
        home = Path(tmp) / "home"
        db_url = f"sqlite:///{home / 'plinth.db'}"
        if db == "postgresql":
            db_url, drop = _pg_schema(pg_url)
            env["PLINTH_DATABASE_URL"] = db_url
        server = LocalServer(home, config=config, admin_token=ADMIN_TOKEN, env=env).start()
        try:
            return _drive(server, clients, seconds, db_url, db)
        finally:
            server.stop()
            if drop is not None:
                drop()


def _drive(server: LocalServer, clients: int, seconds: float, db_url: str, db: str) -> dict:
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=60)  # fmt: skip
    admin.patch("/api/v1/groups/default", json={"quota": {"cpu": 0, "memory": 0}})
    tokens = []
    no_borrow = {"cpu": 0, "memory": 0, "gpu": 0}
    for g in range(GROUPS):
        admin.post("/api/v1/groups", json={"name": f"team-{g}", "borrow_limit": no_borrow,
                   "quota": {"cpu": GROUP_CPU, "memory": 2048}}).raise_for_status()  # fmt: skip
    for i in range(clients):
        r = admin.post("/api/v1/users", json={"name": f"user-{i}", "group": f"team-{i % GROUPS}"})
        r.raise_for_status()
        tokens.append(r.json()["token"])
    baseline = []
    for _ in range(50):
        t0 = time.perf_counter()
        admin.get("/healthz")
        baseline.append(time.perf_counter() - t0)
    pid = server.process.pid if server.process else 0
    rss_before = _rss_mib(pid)
    # HTTP clients first (each builds a TLS context: slow), then the clock starts.
    workers = [Client(server.url, t, 0.0, seed=i) for i, t in enumerate(tokens)]
    deadline = time.monotonic() + seconds
    for w in workers:
        w.deadline = deadline
        w.start()
    for w in workers:
        w.join()
    rss_after = _rss_mib(pid)
    # Leave nothing running, then read the store for the admission check.
    live = admin.get("/api/v1/jobs", params={"limit": 10000}).json()
    for j in live:
        if j["state"] in ("pending", "admitted", "running"):
            admin.post(f"/api/v1/jobs/{j['id']}/cancel")
    end = time.monotonic() + 60
    while time.monotonic() < end and any(
        j["state"] in ("admitted", "running")
        for j in admin.get("/api/v1/jobs", params={"limit": 10000}).json()
    ):
        time.sleep(0.2)
    admin.close()
    return _report(workers, baseline, rss_before, rss_after, over_admission(db_url), db,
                   len(tokens), seconds)  # fmt: skip


def _report(workers, baseline, rss_before, rss_after, over, db, clients, seconds) -> dict:
    base = percentile(baseline, 50)
    endpoints = {}
    for op in MIX:
        lat = [x for w in workers for x in w.latency[op]]
        p50 = percentile(lat, 50)
        endpoints[op] = {
            "count": len(lat),
            "p50_s": round(p50, 5),
            "p99_s": round(percentile(lat, 99), 5),
            "p50_over_baseline": round(p50 / base, 2) if base else None,
            "5xx": sum(w.errors[op]["5xx"] for w in workers),
            "other_errors": sum(w.errors[op]["other_errors"] for w in workers),
        }
    return {
        "db": db,
        "clients": clients,
        "seconds": seconds,
        "submitted": sum(len(w.jobs) for w in workers),
        "baseline_healthz_p50_s": round(base, 5),
        "endpoints": endpoints,
        "total_5xx": sum(e["5xx"] for e in endpoints.values()),
        "total_other_errors": sum(e["other_errors"] for e in endpoints.values()),
        "over_admission": over,
        "rss_mib_before": round(rss_before, 1),
        "rss_mib_after": round(rss_after, 1),
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get(
        "PLINTH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="smoke form: 10 clients, 6 s")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    clients, seconds = (10, 6.0) if args.quick else (args.clients, args.seconds)
    report = run(clients, seconds, args.db, args.pg_url)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0 if report["total_5xx"] == 0 and not report["over_admission"] else 1


if __name__ == "__main__":
    sys.exit(main())
