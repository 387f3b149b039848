"""Two training runs in subprocesses taking turns, so a shared machine's load hits both alike.

The parent starts one worker per model (:class:`TurnWorker`) and alternates them a chunk of
steps at a time (:func:`take_turns`); only the time inside a worker's own chunks counts
toward its samples/s. A worker serves the protocol with :func:`serve`: each stdin line
``N`` runs N steps and answers one JSON line ``{"done", "samples", "seconds"}``; ``eval``
answers the model's test metrics (plus its peak RSS) and ends the worker.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["TurnWorker", "serve", "take_turns"]


def serve(batches: Iterator[Any], step: Callable[[Any], Any],
          evaluate: Callable[[], dict[str, Any]]) -> int:
    """The worker side of the protocol (module docstring); returns the exit code."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "eval":
            res = evaluate()
            res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            print(json.dumps(res), flush=True)
            return 0
        n_steps, samples, done = int(cmd), 0, False
        t0 = time.perf_counter()
        for _ in range(n_steps):
            batch = next(batches, None)
            if batch is None:
                done = True
                break
            step(batch)
            samples += batch.size
        print(json.dumps({"done": done, "samples": samples,
                          "seconds": time.perf_counter() - t0}), flush=True)
    return 1


class TurnWorker:
    """The parent's handle on one worker subprocess running ``cmd``."""

    def __init__(self, name: str, cmd: list[str], root: Path) -> None:
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=dict(os.environ, PYTHONPATH=str(root)))
        self.samples, self.seconds, self.done = 0, 0.0, False
        self.chunks: list[float] = []
        self._read()  # ready

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, cmd: str) -> dict[str, Any]:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def chunk(self, steps: int) -> None:
        r = self.ask(str(steps))
        self.samples += r["samples"]
        self.seconds += r["seconds"]
        if r["samples"]:
            self.chunks.append(r["samples"] / r["seconds"])
        self.done = r["done"]

    def finish(self) -> dict[str, Any]:
        res = self.ask("eval")
        self.proc.wait(timeout=60)
        res.update({
            "samples_per_s": self.samples / self.seconds if self.seconds else 0.0,
            "rows": self.samples,
            "median_chunk_samples_per_s": (sorted(self.chunks)[len(self.chunks) // 2]
                                           if self.chunks else 0.0),
        })
        return res

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def take_turns(workers: Mapping[str, TurnWorker], chunk_steps: int) -> dict[str, dict[str, Any]]:
    """Alternate the workers ``chunk_steps`` steps at a time until every one has finished
    its epoch; return each one's :meth:`TurnWorker.finish`. Workers are killed on error."""
    try:
        while not all(w.done for w in workers.values()):
            for w in workers.values():
                if not w.done:
                    w.chunk(chunk_steps)
        return {name: w.finish() for name, w in workers.items()}
    finally:
        for w in workers.values():
            w.kill()
