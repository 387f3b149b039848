"""Web console: each page's server time with 10,000 jobs in the store, next to the
JSON API's time for the same data in the same run.

A real app (the control plane running, SQLite in a fresh PLINTH_HOME) is driven
in-process through Starlette's TestClient, so a figure is the server's time to
answer plus the same small client overhead on both sides. The store gets
``--jobs`` jobs written directly (90% finished, 10% pending in a group with no
quota and no borrowing, so they stay in the queue without starting processes),
500 metric points for one job, a model with 20 versions and a notebook-free
notebook list.

For each page: p50 and max over ``--repeat`` requests of the console page and of
the API calls a client needs for the same data (e.g. the overview = groups +
nodes; a job page = job + replicas + events (+ explain)), and their ratio.
``ok``: every page's p50 under 300 ms (issue 16).

Usage: ``python benchmarks/console.py --json [--jobs 10000] [--repeat 15]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKEN = "plt_console-bench-admin"
LIMIT_MS = 300.0


def _seed(db: Any, jobs: int) -> tuple[str, str]:
    """Write the jobs, events, metrics and a model; return (finished job, pending job)."""
    from sqlalchemy import insert

    from plinth.store.models import (
        Event,
        Group,
        JobMetric,
        Model,
        ModelAlias,
        ModelVersion,
        User,
        Workload,
        utcnow,
    )  # fmt: skip

    now = utcnow()
    with db.session() as s:
        teams = [Group(name=f"team{i}", quota={"cpu": 1.0, "memory": 1024, "gpu": 0},
                       borrow_limit=None, lend_limit=None) for i in range(5)]  # fmt: skip
        stuck = Group(name="stuck", quota={"cpu": 0.0, "memory": 0, "gpu": 0},
                      borrow_limit={"cpu": 0.0, "memory": 0, "gpu": 0}, lend_limit=None)
        s.add_all([*teams, stuck])
        s.flush()
        users = [User(name=f"user{i}", group_id=g.id, admin=False, cap=None)
                 for i, g in enumerate([*teams, stuck])]  # fmt: skip
        s.add_all(users)
        s.flush()
        rows, events = [], []
        for i in range(jobs):
            pending = i % 10 == 0
            u = users[-1] if pending else users[i % len(teams)]
            t = now - timedelta(seconds=jobs - i)
            spec = {"name": f"job{i}", "group": "stuck" if pending else f"team{i % 5}",
                    "max_runtime": 3600.0, "priority": "normal", "params": {"i": i},
                    "code": None, "retries": 0,
                    "roles": {"main": {"replicas": 1, "command": ["python", "train.py"],
                                       "resources": {"cpu": 0.5, "memory": 256, "gpu": 0},
                                       "env": {}}}}  # fmt: skip
            state = "pending" if pending else ("failed" if i % 7 == 0 else "succeeded")
            rows.append({
                "id": f"job-{i:012x}", "kind": "job", "name": f"job{i}", "group_id": u.group_id,
                "user_id": u.id, "state": state, "reason": "benchmark", "spec": spec,
                "code": None, "demand": {"cpu": 0.5, "memory": 256, "gpu": 0}, "attempt": 0,
                "failures": 0, "retries": 0, "max_runtime_s": 3600.0, "priority": "normal",
                "preemptions": 0, "created_at": t, "queued_at": t,
                "finished_at": None if pending else t,
            })  # fmt: skip
            events.append({"workload_id": f"job-{i:012x}", "type": "submitted",
                           "reason": "benchmark", "time": t, "data": None})  # fmt: skip
        conn = s.connection()
        for k in range(0, len(rows), 1000):
            conn.execute(insert(Workload), rows[k:k + 1000])
            conn.execute(insert(Event), events[k:k + 1000])
        done = next(r["id"] for r in rows if r["state"] == "succeeded")
        waiting = rows[0]["id"]
        conn.execute(insert(JobMetric), [
            {"workload_id": done, "role": "main", "replica": 0, "step": st, "time": 1.7e9 + st,
             "values": {"loss": 1.0 / (st + 1), "auc": 0.5 + st / 1000}}
            for st in range(500)])  # fmt: skip
        m = Model(name="ctr", group_id=teams[0].id, created_by="user0")
        s.add(m)
        s.flush()
        for v in range(1, 21):
            s.add(ModelVersion(model_id=m.id, version=v, path=f"models/ctr/{v}",
                               lineage={"job": done}, created_by="user0"))  # fmt: skip
        s.add(ModelAlias(model_id=m.id, alias="production", version=20))
    return done, waiting


def _get_all(client: Any, urls: list[str], headers: dict[str, str]) -> float:
    t0 = time.perf_counter()
    for u in urls:
        r = client.get(u, headers=headers)
        if r.status_code != 200:
            raise SystemExit(f"GET {u}: {r.status_code} {r.text[:300]}")
    return (time.perf_counter() - t0) * 1000


def _pair(client: Any, page: list[str], api: list[str], headers: dict[str, str],
          repeat: int) -> tuple[list[float], list[float]]:
    """Page and API timed alternately, so that the control loop's cycles and the
    machine's other load fall on both alike."""
    page_ms, api_ms = [], []
    for i in range(repeat):
        if i % 2:
            api_ms.append(_get_all(client, api, headers))
            page_ms.append(_get_all(client, page, {}))
        else:
            page_ms.append(_get_all(client, page, {}))
            api_ms.append(_get_all(client, api, headers))
    return page_ms, api_ms


def run(jobs: int, repeat: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from plinth.api.app import create_app
    from plinth.config import ServerConfig

    home = Path(tempfile.mkdtemp(prefix="plinth-console-bench-")) / "home"
    os.environ["PLINTH_ADMIN_TOKEN"] = TOKEN
    os.environ.pop("PLINTH_DATABASE_URL", None)
    os.environ.setdefault("PLINTH_ISOLATION", "off")
    cfg = ServerConfig.model_validate({"nodes": [{"name": "n1", "cpu": 4, "memory": "8Gi"}]})
    app = create_app(cfg, home=home)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        done, waiting = _seed(app.state.plinth.db, jobs)
        page = c.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"csrf": csrf, "token": TOKEN},
                   headers={"Origin": "http://127.0.0.1"}, follow_redirects=False)  # fmt: skip
        assert r.status_code == 303, r.text
        api = {"Authorization": f"Bearer {TOKEN}"}
        cases: dict[str, tuple[list[str], list[str]]] = {
            "overview": (["/"], ["/api/v1/groups", "/api/v1/nodes"]),
            "queue": (["/queue"], ["/api/v1/queue"]),  # both default to 100 entries
            "jobs": (["/jobs?limit=100"], ["/api/v1/jobs?limit=100"]),
            "jobs_filtered": (["/jobs?state=failed&group=team0&limit=100"],
                              ["/api/v1/jobs?state=failed&group=team0&limit=100"]),
            "job": ([f"/jobs/{done}"], [f"/api/v1/jobs/{done}", f"/api/v1/jobs/{done}/replicas",
                                        f"/api/v1/jobs/{done}/events"]),
            "job_pending": ([f"/jobs/{waiting}"],
                            [f"/api/v1/jobs/{waiting}", f"/api/v1/jobs/{waiting}/replicas",
                             f"/api/v1/jobs/{waiting}/events",
                             f"/api/v1/jobs/{waiting}/explain"]),
            "job_metrics": ([f"/jobs/{done}/metrics.json"], [f"/api/v1/jobs/{done}/metrics"]),
            "notebooks": (["/notebooks"], ["/api/v1/notebooks?limit=200", "/api/v1/groups"]),
            "models": (["/models"], ["/api/v1/models"]),
            "model": (["/models/ctr"], ["/api/v1/models/ctr", "/api/v1/models/ctr/history"]),
            "admin": (["/admin"], ["/api/v1/groups", "/api/v1/users", "/api/v1/quota-expansions",
                                   "/api/v1/reservations", "/api/v1/nodes"]),
        }  # fmt: skip
        pages: dict[str, Any] = {}
        for name, (console_urls, api_urls) in cases.items():
            _pair(c, console_urls, api_urls, api, 2)  # warm: templates compiled, caches
            page_ms, api_ms = _pair(c, console_urls, api_urls, api, repeat)
            p50, a50 = statistics.median(page_ms), statistics.median(api_ms)
            pages[name] = {
                "page_p50_ms": round(p50, 2), "page_max_ms": round(max(page_ms), 2),
                "api_p50_ms": round(a50, 2), "api_max_ms": round(max(api_ms), 2),
                "ratio_p50": round(p50 / a50, 2) if a50 else None,
                "api_calls": len(api_urls),
            }  # fmt: skip
    worst = max(v["page_p50_ms"] for v in pages.values())
    return {
        "benchmark": "console", "jobs": jobs, "repeat": repeat, "limit_ms": LIMIT_MS,
        "worst_page_p50_ms": worst, "ok": worst < LIMIT_MS, "pages": pages,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args(argv)
    if args.jobs < 20 or args.repeat < 1:
        ap.error("--jobs must be >= 20 and --repeat >= 1")
    out = run(args.jobs, args.repeat)
    if args.json:
        print(json.dumps(out))
    else:
        for name, v in out["pages"].items():
            print(f"{name:14} page {v['page_p50_ms']:8.1f} ms  api {v['api_p50_ms']:8.1f} ms "
                  f"({v['api_calls']} call(s))  x{v['ratio_p50']}")  # fmt: skip
        print(f"worst page p50 {out['worst_page_p50_ms']:.1f} ms; ok={out['ok']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
