"""Live training metrics: points posted to the platform while a job runs.

``MetricsReporter.from_env()`` posts to ``POST {PLINTH_URL}/api/v1/jobs/{PLINTH_WORKLOAD_ID}
/metrics`` with ``Authorization: Bearer $PLINTH_TOKEN`` (CONTRACTS.md) when all three are
set, and is a no-op otherwise — so the same trainer runs in a notebook, under
``plinth train local`` and as a platform job.

``report(role, replica, step, values)`` only queues a point (non-finite values and names
outside ``[A-Za-z0-9_.:/-]{1,64}`` are dropped); a background thread posts the queue every
``interval_s`` seconds in requests of at most 1000 points. A failing post (server down,
4xx/5xx, timeout) never raises into training and never blocks it: the points of that post
are dropped, one warning is logged (not one per failure), and later posts are tried again.
The queue is bounded (``max_queued`` points; the oldest go first when it is full).
``close()`` makes one last attempt to post what is queued, bounded by ``timeout_s``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections import deque
from typing import Any

__all__ = ["MetricsReporter"]

log = logging.getLogger("plinth.train.reporting")

_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
MAX_POINTS_PER_POST = 1000


class MetricsReporter:
    """Queue metric points and post them in batches from a background thread."""

    def __init__(self, url: str | None, token: str | None, workload_id: str | None, *,
                 interval_s: float = 5.0, timeout_s: float = 5.0, max_queued: int = 10000,
                 ) -> None:
        self.enabled = bool(url and token and workload_id)
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self._queue: deque[dict[str, Any]] = deque(maxlen=max_queued)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._warned = False
        self.posted = 0
        self.failed_posts = 0
        self._client: Any = None
        self._thread: threading.Thread | None = None
        if self.enabled:
            import httpx  # only when reporting: a plain training run does not pay for it

            self._client = httpx.Client(
                base_url=str(url).rstrip("/"), timeout=timeout_s,
                headers={"Authorization": f"Bearer {token}"},
            )
            self._path = f"/api/v1/jobs/{workload_id}/metrics"
            self._thread = threading.Thread(target=self._run, name="plinth-metrics",
                                             daemon=True)
            self._thread.start()

    @classmethod
    def from_env(cls, **kw: Any) -> MetricsReporter:
        """From ``PLINTH_URL``, ``PLINTH_TOKEN``, ``PLINTH_WORKLOAD_ID`` (no-op if one lacks)."""
        env = os.environ
        return cls(env.get("PLINTH_URL"), env.get("PLINTH_TOKEN"),
                   env.get("PLINTH_WORKLOAD_ID"), **kw)

    def report(self, role: str, replica: int, step: int, values: dict[str, float]) -> None:
        """Queue one point; returns at once. Bad names and non-finite values are dropped."""
        if not self.enabled or self._closed:
            return
        clean = {k: float(v) for k, v in values.items()
                 if _NAME.match(k) and v is not None and math.isfinite(float(v))}
        if not clean:
            return
        point = {"role": role, "replica": int(replica), "step": int(step),
                 "time": time.time(), "values": clean}
        with self._lock:
            self._queue.append(point)

    def flush(self) -> None:
        """Post everything queued now (from the calling thread)."""
        while True:
            with self._lock:
                if not self._queue:
                    return
                n = min(MAX_POINTS_PER_POST, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
            self._post(batch)

    def _post(self, batch: list[dict[str, Any]]) -> None:
        try:
            r = self._client.post(self._path, json={"points": batch})
            if r.status_code >= 300:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            self.posted += len(batch)
        except Exception as e:  # noqa: BLE001 - metrics must never break training
            self.failed_posts += 1
            if not self._warned:
                self._warned = True
                log.warning("posting training metrics failed (%s); dropping those points "
                            "and retrying later posts quietly", e)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._closed:
                return
            self.flush()

    def close(self) -> None:
        """Stop the thread and make one last bounded attempt to post the queue."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s)
        self.flush()
        self._client.close()
