"""Online ranking: ``python -m plinth.serve`` (dynamic batching) vs. a minimal FastAPI
handler serving the same package without batching, in the same run.

A request ranks one user's 100 candidates: 100 feature dicts sharing the user's fields
(``c1``, ``c2``) with each candidate's own (``c3``, ``c4``, ``m1``, numerics), some ids
never seen in training. Both servers run as subprocesses on loopback; a closed-loop load
generator (a minimal asyncio HTTP/1.1 client with keep-alive, so the client costs little
CPU beside the servers) runs ``concurrency`` requests at a time for ``--seconds`` per
level, the two servers taking turns in half-second slices so that both see the same machine.

* ``plinth``: ``python -m plinth.serve`` with its defaults (1024 rows per batch, no
  queue delay: batches form from what queues while the previous one runs) and its request
  path: bodies decoded straight into columns, the scoring lane in front of FastAPI (see
  docs/serving.md, "The request path");
* ``baseline``: ``async def predict(request)``: parse the JSON, call
  ``ModelPackage.predict_records`` in the thread pool, answer - what one writes without a
  batcher (with the same process settings as ``plinth.serve``: pyarrow's import probing
  cut short, see ``plinth/serve/imports.py``, and one torch thread, so that the ratio
  measures the server's request path and batching, not those settings);
* ``plinth_unbatched`` (with ``--unbatched``): ``plinth.serve --max-batch-rows 100``, one
  request a batch: the request path alone, to split the ratio into its two parts.

``--json`` prints one object: ``plinth`` and ``baseline``, each
``{max_qps_p99_under_50ms, levels: [{concurrency, qps, p50_ms, p99_ms, errors}]}``,
``qps_ratio`` (plinth / baseline at p99 < 50 ms; null when the baseline never meets it),
``load_avg`` (``os.getloadavg()`` before and after); with ``--unbatched`` also
``plinth_unbatched`` and ``unbatched_qps_ratio`` (it / baseline). ``--quick`` is a smoke
test.

    nice -n 10 python benchmarks/serving.py --json
    python benchmarks/serving.py --json --quick
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._stats import percentile

CANDIDATES = 100
SLICE_S = 0.5  # each server's turn, in seconds
P99_TARGET_MS = 50.0


# ---------------------------------------------------------------------------- the model

def build_package(root: Path, quick: bool) -> Path:
    """A DeepFM trained for a few steps on synthetic data (weights do not matter here,
    sizes do): 4 single-valued fields, one multi-valued, 3 numeric."""
    from plinth.data.reader import ParquetReader
    from plinth.data.synthetic import SyntheticSpec, generate
    from plinth.train.config import load_config
    from plinth.train.trainer import Trainer

    data = root / "data"
    generate(SyntheticSpec(rows=2000 if quick else 20000, cardinalities=(1000, 100, 5000, 500),
                           multi_fields=1, multi_cardinality=1000, numeric=3, seed=3,
                           row_group_size=1000), data)
    cfg = load_config({
        "data": {"train": str(data / "train"), "test": str(data / "test")},
        "schema": str(data / "schema.yaml"), "model": "deepfm",
        "embedding_dim": 4 if quick else 16, "hidden": [16] if quick else [128, 64],
        "batch_size": 256, "epochs": 1, "threads": 1, "output_dir": str(root / "run"),
        "checkpoint": {"every_steps": None}, "progress": False,
    })
    tr = Trainer(cfg, log=lambda m: None)
    for i, batch in enumerate(ParquetReader(cfg.data_paths("train"), cfg.schema,
                                            256).iter_epoch(0)):
        tr.train_step(batch)
        if i >= 20:
            break
    return tr.export_package(root / "model")


def ranking_requests(data: Path, n: int) -> list[bytes]:
    """``n`` JSON bodies, each one user with 100 candidates (every 10th id unseen)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(data / "train").to_pylist()
    bodies = []
    for r in range(n):
        user = rows[(r * 7919) % len(rows)]
        cands = []
        for j in range(CANDIDATES):
            item = rows[(r * CANDIDATES + j) % len(rows)]
            cands.append({"c1": user["c1"], "c2": user["c2"],
                          "c3": item["c3"] if j % 10 else 10**15 + r * CANDIDATES + j,
                          "c4": item["c4"], "m1": item["m1"],
                          "n1": item["n1"], "n2": item["n2"], "n3": item["n3"]})
        bodies.append(json.dumps(cands).encode())
    return bodies


# ---------------------------------------------------------------------------- baseline

def baseline_server(package: Path, port_file: Path) -> None:
    """The baseline: one FastAPI handler, no batching (runs in its own process)."""
    import socket

    import torch
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool

    from plinth.serve.imports import skip_missing_optional_imports
    from plinth.train.package import ModelPackage

    # As plinth.serve does (imports.py; one torch thread): the comparison is batching alone.
    skip_missing_optional_imports()
    torch.set_num_threads(1)
    pkg = ModelPackage.load(package)
    pkg.predict_records([{}])
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        records = json.loads(await request.body())
        return {"predictions": (await run_in_threadpool(pkg.predict_records, records)).tolist()}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port_file.write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(
        sockets=[sock])


# ---------------------------------------------------------------------------- load

async def _one_client(port: int, bodies: list[bytes], start: int, stop_at: float,
                      latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter()
            writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if status == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors.append(status)
    except (ConnectionError, asyncio.IncompleteReadError):
        errors.append(-1)
    finally:
        writer.close()


@dataclass
class Tally:
    """What one server answered at one level, summed over its time slices."""

    latencies: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def level(self, concurrency: int) -> dict:
        ms = [x * 1000 for x in self.latencies]
        p50, p99 = (round(percentile(ms, q), 2) if ms else None for q in (50, 99))
        return {"concurrency": concurrency,
                "qps": round(len(ms) / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": p50, "p99_ms": p99, "errors": len(self.errors)}


def measure(port: int, bodies: list[bytes], concurrency: int, seconds: float,
            tally: Tally | None = None) -> Tally:
    """``concurrency`` closed-loop clients for ``seconds``, added to ``tally``."""
    tally = tally if tally is not None else Tally()

    async def run() -> float:
        t0 = time.perf_counter()
        stop_at = t0 + seconds
        await asyncio.gather(*(_one_client(port, bodies, k * 17, stop_at, tally.latencies,
                                           tally.errors) for k in range(concurrency)))
        return time.perf_counter() - t0

    tally.seconds += asyncio.run(run())
    return tally


def summarise(levels: list[dict]) -> dict:
    ok = [lv["qps"] for lv in levels
          if lv["p99_ms"] is not None and lv["p99_ms"] < P99_TARGET_MS and not lv["errors"]]
    return {"max_qps_p99_under_50ms": max(ok) if ok else None, "levels": levels}


# ---------------------------------------------------------------------------- processes

def _start(cmd: list[str], port_file: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    time.sleep(0.2)  # the port file is written just before (baseline) / after listen
    return proc, int(port_file.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny model, 2 levels")
    ap.add_argument("--seconds", type=float, default=None, help="per level (default 3)")
    ap.add_argument("--levels", default=None, help="concurrency levels, e.g. 1,4,16,32")
    ap.add_argument("--unbatched", action="store_true",
                    help="also plinth.serve with one request a batch (the ratio's parts)")
    ap.add_argument("--baseline-server", nargs=2, metavar=("PACKAGE", "PORT_FILE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.baseline_server:
        baseline_server(Path(args.baseline_server[0]), Path(args.baseline_server[1]))
        return 0
    seconds = args.seconds or (0.5 if args.quick else 3.0)
    levels = [int(x) for x in (args.levels or ("1,4" if args.quick else
                                               "1,2,4,8,16,32,64")).split(",")]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="plinth-bench-serving-") as tmp:
        root = Path(tmp)
        package = build_package(root, args.quick)
        bodies = ranking_requests(root / "data", 64)
        servers = {
            "plinth": _start([sys.executable, "-m", "plinth.serve", str(package), "--name",
                              "ctr", "--port-file", str(root / "plinth.port")],
                             root / "plinth.port"),
            "baseline": _start([sys.executable, __file__, "--baseline-server", str(package),
                                str(root / "baseline.port")], root / "baseline.port"),
        }
        if args.unbatched:
            servers["plinth_unbatched"] = _start(
                [sys.executable, "-m", "plinth.serve", str(package), "--name", "ctr",
                 "--port-file", str(root / "unbatched.port"), "--max-batch-rows",
                 str(CANDIDATES)], root / "unbatched.port")
        results: dict[str, list[dict]] = {name: [] for name in servers}
        try:
            for name, (_, port) in servers.items():  # warm-up: connections, caches
                measure(port, bodies, 2, min(seconds, 1.0))
            for c in levels:
                # The two servers take turns in short slices, so that both see the same
                # machine even when its load changes from second to second.
                tallies = {name: Tally() for name in servers}
                for _ in range(max(1, round(seconds / SLICE_S))):
                    for name, (_, port) in servers.items():
                        measure(port, bodies, c, min(seconds, SLICE_S), tallies[name])
                for name in servers:
                    results[name].append(tallies[name].level(c))
                    if not args.json:
                        print(name, results[name][-1], file=sys.stderr)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
    report: dict[str, Any] = {name: summarise(lv) for name, lv in results.items()}
    p, b = (report[k]["max_qps_p99_under_50ms"] for k in ("plinth", "baseline"))
    report["qps_ratio"] = round(p / b, 2) if p and b else None
    if "plinth_unbatched" in report:
        u = report["plinth_unbatched"]["max_qps_p99_under_50ms"]
        report["unbatched_qps_ratio"] = round(u / b, 2) if u and b else None
    report["candidates_per_request"] = CANDIDATES
    report["seconds_per_level"] = seconds
    report["load_avg"] = {"before": [round(x, 2) for x in load_before],
                          "after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
