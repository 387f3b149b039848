"""How much the local executor's ``launch()`` costs next to a bare ``subprocess.Popen``.

Both start the same command (``/bin/true``) in the same run, interleaved so that
machine noise hits both alike:

* ``bare_popen``: ``subprocess.Popen(cmd, start_new_session=True)`` -- the floor;
* ``launch``: ``LocalExecutor.launch(spec)`` -- one Popen of the supervisor plus
  the status directory and handle.

It also measures start-to-finish: from the call until the exit code is known
(``Popen.wait()`` for bare, ``poll()`` every 0.5 ms for the executor), which adds
the supervisor's own start-up -- what the submit-to-running latency pays.

Prints one JSON object with ``--json``; ``--quick`` uses few iterations (smoke test).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plinth.executors.base import ReplicaLaunch
from plinth.executors.local import LocalExecutor
from plinth.executors.supervisor import proc_start_time

try:
    from benchmarks._stats import percentile
except ImportError:  # run as a script: benchmarks/ is sys.path[0]
    from _stats import percentile

COMMAND = [shutil.which("true") or "/bin/true"]


def _quantiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50_s": percentile(samples, 50),
        "p90_s": percentile(samples, 90),
        "mean_s": statistics.fmean(samples),
    }


def _wait_gone(ex: LocalExecutor, handle: dict) -> None:
    """Until the supervisor itself has exited, so that no iteration overlaps the next."""
    while ex.poll(handle) is None or proc_start_time(handle["supervisor_pid"]) is not None:
        time.sleep(0.0005)


def run(iterations: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="plinth-bench-launch-"))
    try:
        ex = LocalExecutor(nodes=[{"name": "n", "cpu": 1, "memory": 1024}], state_dir=root / "s")
        work = root / "w"
        work.mkdir()

        def spec(i: int) -> ReplicaLaunch:
            return ReplicaLaunch(
                workload_id="bench", role="main", replica=0, attempt=i, command=COMMAND,
                env={"PLINTH_WORKLOAD_ID": "bench"}, workdir=work,
                log_path=root / "logs" / f"{i}.log", node="n",
            )  # fmt: skip

        bare_call, launch_call, bare_run, launch_run = [], [], [], []
        for i in range(iterations):
            # call cost only
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                COMMAND, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, cwd=work,
            )  # fmt: skip
            bare_call.append(time.perf_counter() - t0)
            proc.wait()
            t0 = time.perf_counter()
            handle = ex.launch(spec(2 * i))
            launch_call.append(time.perf_counter() - t0)
            _wait_gone(ex, handle)  # as proc.wait() above: nothing left running
            # start to finish
            t0 = time.perf_counter()
            subprocess.Popen(
                COMMAND, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, cwd=work,
            ).wait()  # fmt: skip
            bare_run.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            handle = ex.launch(spec(2 * i + 1))
            while ex.poll(handle) is None:
                time.sleep(0.0005)
            launch_run.append(time.perf_counter() - t0)
            _wait_gone(ex, handle)
        bare_c, launch_c = _quantiles(bare_call), _quantiles(launch_call)
        bare_r, launch_r = _quantiles(bare_run), _quantiles(launch_run)
        return {
            "benchmark": "executor_launch",
            "iterations": iterations,
            "command": COMMAND,
            "bare_popen_p50_s": bare_c["p50_s"],
            "launch_p50_s": launch_c["p50_s"],
            "launch_over_bare_p50": launch_c["p50_s"] / bare_c["p50_s"],
            "bare_popen": bare_c,
            "launch": launch_c,
            "bare_start_to_exit_p50_s": bare_r["p50_s"],
            "launch_start_to_exit_p50_s": launch_r["p50_s"],
            "start_to_exit_over_bare_p50": launch_r["p50_s"] / bare_r["p50_s"],
            "bare_start_to_exit": bare_r,
            "launch_start_to_exit": launch_r,
            "python": sys.version.split()[0],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    result = run(args.iterations or (10 if args.quick else 200))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if not isinstance(value, dict):
                print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
