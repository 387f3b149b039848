"""Sample building: Plinth's build against the same joins written in DuckDB SQL.

    python benchmarks/sample_join.py --json            # 10M impressions, ~1M events, 3M snapshots
    python benchmarks/sample_join.py --json --smoke    # tiny, for the test suite

Raw logs come from :mod:`plinth.data.rawlogs` (cached in ``--workdir``). Both sides
compute, from the same Parquet files, one row per impression with a click label (by
request, 30 minutes), a conversion label (by user+item, last touch, 24 hours), duplicate
events counted once, and user and item features as of the impression (backward as-of
joins), and write Parquet partitioned by date. Each side runs in its own subprocess;
its peak RSS is the child's ``ru_maxrss`` and its time is measured inside it (imports
excluded).
The outputs are then compared row for row. JSON: ``plinth`` and ``duckdb``, each
``{rows_per_s, peak_rss_mb, rows, seconds}``, ``outputs_equal``, ``speedup`` (Plinth's
rows/s over DuckDB's), ``memory_ratio`` (Plinth's peak RSS over DuckDB's), the sizes.

``--ray`` adds ``plinth_ray``: the same build with ``engine="ray"`` on a local Ray of
``--threads`` cores (``ray_start_s``: starting it, not in ``seconds``; ``peak_rss_mb`` is
the driver's only, Ray's workers are other processes) and ``ray_equal``: whether its
dataset equals the Polars engine's, file by file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

SCHEMA = {
    "label": "click",
    "labels": [
        {"name": "click", "event": "click", "window": "30m", "match": "request"},
        {"name": "conversion", "event": "conversion", "window": "24h", "match": "user_item"},
    ],
    "categorical": ["user_id", "item_id", "device", "position", "u_segment", "i_category"],
    "numeric": ["u_activity", "i_price"],
}
OUTPUT_COLUMNS = ["request_id", "user_id", "item_id", "ts", "device", "position", "u_segment",
                  "i_category", "u_activity", "i_price", "click", "conversion"]

DUCKDB_SQL = """
SET TimeZone = 'UTC';
CREATE TEMP VIEW imp AS
  SELECT request_id, user_id, item_id, ts::TIMESTAMP AS ts, device, position
  FROM read_parquet('{raw}/impressions/**/*.parquet');
CREATE TEMP VIEW ev AS
  SELECT DISTINCT event, request_id, user_id, item_id, ts::TIMESTAMP AS ts
  FROM read_parquet('{raw}/events/**/*.parquet');
CREATE TEMP VIEW users AS
  SELECT user_id, ts::TIMESTAMP AS ts, u_segment, u_activity
  FROM read_parquet('{raw}/user_features/**/*.parquet');
CREATE TEMP VIEW items AS
  SELECT item_id, ts::TIMESTAMP AS ts, i_category, i_price
  FROM read_parquet('{raw}/item_features/**/*.parquet');
COPY (
  WITH clicks AS (
    SELECT DISTINCT i.request_id, i.item_id
    FROM (SELECT * FROM ev WHERE event = 'click' AND request_id IS NOT NULL
          AND item_id IS NOT NULL) e
    ASOF JOIN imp i ON e.request_id = i.request_id AND e.item_id = i.item_id AND e.ts >= i.ts
    WHERE e.ts - i.ts <= INTERVAL 30 MINUTE),
  conversions AS (
    SELECT DISTINCT i.request_id, i.item_id
    FROM (SELECT * FROM ev WHERE event = 'conversion' AND user_id IS NOT NULL
          AND item_id IS NOT NULL) e
    ASOF JOIN imp i ON e.user_id = i.user_id AND e.item_id = i.item_id AND e.ts >= i.ts
    WHERE e.ts - i.ts <= INTERVAL 24 HOUR)
  SELECT i.request_id, i.user_id, i.item_id, i.ts, i.device, i.position,
         u.u_segment, it.i_category, u.u_activity, it.i_price,
         (c.request_id IS NOT NULL)::TINYINT AS click,
         (v.request_id IS NOT NULL)::TINYINT AS conversion,
         i.ts::DATE AS date
  FROM imp i
  ASOF LEFT JOIN users u ON i.user_id = u.user_id AND i.ts >= u.ts
  ASOF LEFT JOIN items it ON i.item_id = it.item_id AND i.ts >= it.ts
  LEFT JOIN clicks c ON i.request_id = c.request_id AND i.item_id = c.item_id
  LEFT JOIN conversions v ON i.request_id = v.request_id AND i.item_id = v.item_id
  ORDER BY i.ts, i.request_id, i.item_id
) TO '{out}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd);
"""


def _sizes(a: argparse.Namespace) -> dict[str, Any]:
    if a.smoke:
        return {"impressions": 4_000, "users": 300, "items": 100, "user_snapshots": 800,
                "item_snapshots": 400, "days": 3, "base_ctr": 0.15}
    return {"impressions": a.impressions, "users": a.impressions // 20,
            "items": a.impressions // 100, "user_snapshots": a.snapshots * 2 // 3,
            "item_snapshots": a.snapshots // 3, "days": a.days, "base_ctr": 0.115}


def _raw_logs(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    """Generate (or reuse) the raw logs; return their counts."""
    from plinth.data.rawlogs import RawLogSpec, generate_raw_logs

    raw = workdir / "raw"
    marker = raw / "rawlogs.json"
    if marker.is_file():
        meta = json.loads(marker.read_text())
        if all(meta["spec"].get(k) == v for k, v in sizes.items()) and not meta["spec"]["truth"]:
            return meta["counts"]
    import shutil

    shutil.rmtree(raw, ignore_errors=True)
    return generate_raw_logs(RawLogSpec(**sizes, truth=False), raw)


# --- the two sides (run in child processes) --------------------------------------------------

def _run_plinth(workdir: Path, engine: str = "polars", threads: int = 2) -> dict[str, Any]:
    from plinth.data.build import build
    from plinth.data.spec import load_spec

    raw = workdir / "raw"
    out = workdir / ("out-plinth" if engine == "polars" else f"out-plinth_{engine}")
    if engine == "ray":  # started here so that its start-up is reported apart
        import logging

        import ray

        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=threads, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False,
                 logging_level=logging.WARNING)
        ray_start_s = time.perf_counter() - t0
    spec = load_spec({"schema": SCHEMA, "output": str(out),
                      "impressions": str(raw / "impressions"), "events": str(raw / "events"),
                      "user_features": str(raw / "user_features"),
                      "item_features": str(raw / "item_features")})
    t0 = time.perf_counter()
    result = build(spec, progress=False, engine=engine)
    r = {"seconds": time.perf_counter() - t0, "rows": result.rows_total}
    if engine == "ray":
        r["ray_start_s"] = ray_start_s
        ray.shutdown()
    return r


def _run_duckdb(workdir: Path, threads: int) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    t0 = time.perf_counter()
    con.execute(DUCKDB_SQL.format(raw=workdir / "raw", out=workdir / "out-duckdb"))
    seconds = time.perf_counter() - t0
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{workdir}/out-duckdb/**/*.parquet')"
                       ).fetchone()[0]
    return {"seconds": seconds, "rows": int(rows)}


def _measure(side: str, workdir: Path, threads: int) -> dict[str, Any]:
    """Run one side in a fresh interpreter, which reports its own peak RSS (ru_maxrss)."""
    import shutil

    shutil.rmtree(workdir / f"out-{side}", ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side,
           "--workdir", str(workdir), "--threads", str(threads)]
    env = {**os.environ, "POLARS_MAX_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{err.decode()[-3000:]}")
    r = json.loads(out.decode().strip().splitlines()[-1])
    r["peak_rss_mb"] = r.pop("peak_rss_kb") / 1024
    r["rows_per_s"] = r["rows"] / r["seconds"]
    return r


def _compare(workdir: Path) -> bool:
    import polars as pl

    from plinth.data import manifest as mf

    m = mf.read_manifest(workdir / "out-plinth")
    p = pl.read_parquet(mf.dataset_files(workdir / "out-plinth", m)).select(OUTPUT_COLUMNS)
    d = pl.read_parquet(workdir / "out-duckdb" / "**" / "*.parquet",
                        hive_partitioning=False).select(OUTPUT_COLUMNS)
    keys = ["request_id", "item_id"]
    p, d = p.sort(keys), d.sort(keys)
    d = d.cast(dict(p.schema), strict=False)
    return p.height == d.height and p.equals(d)


def _ray_equal(workdir: Path) -> bool:
    """The Ray engine's dataset equals the Polars engine's: same files, same tables."""
    import pyarrow.parquet as pq

    from plinth.data import manifest as mf

    a, b = workdir / "out-plinth", workdir / "out-plinth_ray"
    ma, mb = mf.read_manifest(a), mf.read_manifest(b)
    if ma is None or mb is None or ma["days"] != mb["days"]:
        return False
    return all(pq.read_table(a / f).equals(pq.read_table(b / f))
               for d in ma["days"].values() for f in d["files"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--smoke", "--quick", action="store_true", help="tiny sizes (seconds)")
    ap.add_argument("--impressions", type=int, default=10_000_000)
    ap.add_argument("--snapshots", type=int, default=3_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=REPO / "runs" / "sample_join")
    ap.add_argument("--ray", action="store_true",
                    help="also build with --engine ray (plinth_ray, ray_equal)")
    ap.add_argument("--side", choices=["plinth", "plinth_ray", "duckdb"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.side:  # child: run one side, report time and rows; peak RSS of this process
        import resource

        if a.side == "duckdb":
            r = _run_duckdb(a.workdir, a.threads)
        else:
            r = _run_plinth(a.workdir, "ray" if a.side == "plinth_ray" else "polars", a.threads)
        r["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(r))
        return 0
    a.workdir.mkdir(parents=True, exist_ok=True)
    sizes = _sizes(a)
    counts = _raw_logs(a.workdir, sizes)
    duck = _measure("duckdb", a.workdir, a.threads)
    plinth = _measure("plinth", a.workdir, a.threads)
    report = {
        "sizes": counts,
        "threads": a.threads,
        "plinth": plinth,
        "duckdb": duck,
        "speedup": plinth["rows_per_s"] / duck["rows_per_s"],
        "memory_ratio": plinth["peak_rss_mb"] / duck["peak_rss_mb"],
        "outputs_equal": _compare(a.workdir),
        "load": os.getloadavg()[0],
    }
    if a.ray:
        report["plinth_ray"] = _measure("plinth_ray", a.workdir, a.threads)
        report["ray_equal"] = _ray_equal(a.workdir)
    if a.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
