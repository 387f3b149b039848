"""``make demo`` step: synthetic CTR data -> a ``sparse-ctr`` job -> test AUC vs Bayes-optimal.

Generates a small synthetic set (known ground truth) in a temporary directory, starts a
Plinth server, and submits the built-in ``sparse-ctr`` template with 2 parameter-server
shards and 2 workers (``plinth job submit --template sparse-ctr --param ...``). It shows
the job's live metrics, prints worker 0's test AUC and log loss next to the best any
model could reach on that test split, then registers the trained package, deploys it on
two replicas (``plinth deploy create``) and prints predictions for a few test rows
through the platform's endpoint with their latency.

When this installation has no distributed trainer (``plinth.train.distributed``), it
trains the example DeepFM in one process instead (``plinth train local --json``).
Exits non-zero if any step fails.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ctr" / "config.yaml"
# The demo's server declares room for 2 shards and 2 workers whatever this machine has
# (the processes share its cores; the scheduler needs the gang to fit).
DEMO_NODE = {"name": "demo", "cpu": 8, "memory": "16Gi", "gpu": 0}
# The example model (examples/ctr/config.yaml), as algorithm parameters of sparse-ctr.
ALGORITHM = {"model": "deepfm", "embedding_dim": 8, "hidden": "[64, 32]", "epochs": 2}
TIMEOUT_S = 1200  # the longest any one step may take, even on a busy machine


def _plinth() -> list[str]:
    from plinth.cli.local_server import plinth_command

    return plinth_command()


def _run(args: list[str], env: dict[str, str] | None = None, *, echo: bool = True,
         capture: bool = True) -> str:
    """Run ``plinth ARGS`` (for at most TIMEOUT_S); raise RuntimeError naming the command
    when it fails."""
    if echo:
        print("$ plinth " + " ".join(args), flush=True)
    try:
        r = subprocess.run([*_plinth(), *args], env=env, cwd=ROOT, check=False, text=True,
                           stdout=subprocess.PIPE if capture else None,
                           stderr=subprocess.PIPE if capture else None, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`plinth {' '.join(args)}` took over {TIMEOUT_S}s") from None
    if r.returncode != 0:
        raise RuntimeError(f"`plinth {' '.join(args)}` exited with {r.returncode}: "
                           f"{(r.stderr or '')[-2000:]}")
    return r.stdout or ""


def _final_result(log: str) -> dict[str, Any]:
    """The trainer's result: the last line of worker 0's output that is a JSON object."""
    for line in reversed(log.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise RuntimeError("worker 0 printed no result line; see `plinth job logs`")


def train_on_the_platform(data: Path, work: Path) -> dict[str, Any]:
    """Submit sparse-ctr (2 shards, 2 workers) to a fresh server; return worker 0's result."""
    from plinth.cli.local_server import LocalServer

    server = LocalServer(work / "home", config={"nodes": [DEMO_NODE]})
    server.start()
    try:
        env = server.client_env(server.admin_token())
        print(f"server at {server.url}", flush=True)
        params = {**ALGORITHM, "data": str(data), "ps": 2, "workers": 2}
        args = ["job", "submit", "--template", "sparse-ctr", "--name", "demo-ctr"]
        for k, v in params.items():
            args += ["--param", f"{k}={v}"]
        job_id = _run(args, env).strip().splitlines()[-1]
        t0 = time.perf_counter()
        # Live training metrics (loss, samples/s, held-out AUC) as the workers report them.
        _run(["job", "metrics", job_id, "--follow", "--name", "loss"], env, capture=False)
        job = json.loads(_run(["job", "wait", job_id, "-o", "json"], env, echo=False))
        print(f"job {job_id} {job['state']} in {time.perf_counter() - t0:.0f}s: {job['reason']}",
              flush=True)
        template = job.get("template") or {}
        print(f"template {template.get('name')} v{template.get('version')}; roles "
              + ", ".join(f"{r} x{s['replicas']}" for r, s in job["spec"]["roles"].items()))
        points = json.loads(_run(["job", "metrics", job_id, "-o", "json"], env, echo=False))
        print(f"$ plinth job metrics {job_id} -o json   ({len(points['points'])} points; "
              "each worker's last)")
        last = {p["replica"]: p for p in points["points"] if p["role"] == "worker"}
        for replica, pt in sorted(last.items()):
            values = ", ".join(f"{k}={v:.4g}" for k, v in sorted(pt["values"].items()))
            print(f"  worker-{replica} step {pt['step']}: {values}")
        if job["state"] != "succeeded":
            print(_run(["job", "logs", job_id], env, echo=False)[-4000:], file=sys.stderr)
            raise RuntimeError(f"job {job_id} ended {job['state']}: {job['reason']}")
        log = _run(["job", "logs", job_id, "--role", "worker", "--replica", "0"], env,
                   echo=False)  # fmt: skip
        result = _final_result(log)
        serve_on_the_platform(server, env, job_id, data)
        return result
    finally:
        server.stop()


def _test_rows(data: Path, n: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(data / "test").slice(0, n).to_pylist()
    return [{k: v for k, v in r.items() if k not in ("label", "p_true")} for r in rows]


def serve_on_the_platform(server: Any, env: dict[str, str], job_id: str, data: Path) -> None:
    """Register the job's package, deploy it on 2 replicas under quota, and print
    predictions for a few test rows through the platform's endpoint, with latency."""
    from plinth.client import Client

    print("\n-- serving the trained model --", flush=True)
    _run(["model", "register", "demo-ctr", "--from-job", job_id, "--path", "run/model"], env,
         capture=False)
    _run(["model", "alias", "demo-ctr", "production", "1"], env, capture=False)
    _run(["deploy", "create", "demo-ctr", "--model", "demo-ctr@production", "--replicas", "2",
          "--cpu", "0.5", "--memory", "1Gi"], env, capture=False)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        d = json.loads(_run(["deploy", "get", "demo-ctr", "-o", "json"], env, echo=False))
        if d["state"] == "running" and d["ready_replicas"] == d["replicas"]:
            break
        if d["state"] not in ("pending", "admitted", "running") or time.monotonic() > deadline:
            raise RuntimeError(f"deployment demo-ctr is {d['state']}: {d['reason']}")
        time.sleep(0.5)
    _run(["deploy", "get", "demo-ctr"], env, capture=False)
    rows = _test_rows(data, 5)
    with Client(server.url, env["PLINTH_TOKEN"]) as client:
        for _ in range(120):  # the replicas accept requests once loaded and warm
            try:
                client.deployments.predict("demo-ctr", rows[:1])
                break
            except Exception:  # noqa: BLE001 - not ready yet: 503 while loading
                time.sleep(0.5)
        print(f"$ POST {d['endpoint']}  (one row per request)")
        for row in rows:
            t0 = time.perf_counter()
            out = client.deployments.predict("demo-ctr", [row])
            ms = (time.perf_counter() - t0) * 1000
            shown = ", ".join(f"{k}={v}" for k, v in list(row.items())[:3])
            print(f"  p(click)={out['predictions'][0]:.4f}  {ms:6.1f} ms  "
                  f"(version {out['version']}; {shown}, ...)", flush=True)
    _run(["deploy", "delete", "demo-ctr"], env, capture=False)


def train_in_one_process(work: Path) -> dict[str, Any]:
    """The example config through ``plinth train local --json`` (no server)."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["output_dir"] = str(work / "run")
    cfg["data"] = {"train": "train", "test": "test"}
    cfg["schema"] = "schema.yaml"
    cfg_path = work / "data" / "config.yaml"  # data/ paths in the example resolve here
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [*_plinth(), "train", "local", str(cfg_path), "--json"]
    print("$ plinth train local config.yaml --json", flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if r.returncode != 0:
        print(r.stderr[-4000:], file=sys.stderr)
        raise RuntimeError(f"training failed with exit code {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    from plinth.data.synthetic import SyntheticSpec, default_cardinalities, generate

    work = Path(tempfile.mkdtemp(prefix="plinth-demo-train-"))
    try:
        t0 = time.perf_counter()
        stats = generate(
            SyntheticSpec(rows=60_000, cardinalities=default_cardinalities(8, 50_000),
                          multi_fields=1, multi_cardinality=5_000, numeric=4, seed=0),
            work / "data",
        )
        print(f"generated {stats['train_rows']} train + {stats['test_rows']} test rows "
              f"in {time.perf_counter() - t0:.1f}s ({work / 'data'})", flush=True)
        try:
            if importlib.util.find_spec("plinth.train.distributed") is not None:
                res = train_on_the_platform(work / "data", work)
            else:
                print("this installation has no distributed trainer (plinth.train.distributed);"
                      " training in one process", flush=True)
                res = train_in_one_process(work)
        except RuntimeError as e:
            print(str(e), file=sys.stderr)
            return 1
        print(f"trained {res.get('model')} for {res.get('steps')} steps at "
              f"{res.get('samples_per_s', 0):,.0f} samples/s")
        print(f"test AUC      {res['auc']:.4f}   (Bayes-optimal {stats['bayes_auc']:.4f})")
        if "logloss" in res:
            print(f"test log loss {res['logloss']:.4f}   "
                  f"(Bayes-optimal {stats['bayes_logloss']:.4f})")
        if res.get("package"):
            pkg = Path(res["package"])
            if pkg.is_dir():
                print(f"model package: {', '.join(sorted(p.name for p in pkg.iterdir()))}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
