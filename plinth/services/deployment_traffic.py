"""The platform's endpoint of a deployment: ``/api/v1/deployments/{name}/predict``.

Requests are balanced round-robin over the deployment's running replicas; with a
canary, each request first draws its pool (the canary's replicas with the canary's
percentage, else the main ones) and falls back to the other pool. A replica
that does not answer -- refused connection (restarting, not ready yet), a connection
cut mid-request (killed), a 503 (queue full) -- is skipped and the request goes to the
next one; a prediction is a pure function of its input, so sending it again is safe.
Only when no replica answered within ``RETRY_FOR_S`` does the caller get a 503 with
``Retry-After``. Any other answer of a replica (predictions, a 4xx saying what is wrong
with the records) is returned as it is.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

__all__ = ["RETRY_FOR_S", "Answer", "Traffic"]

RETRY_FOR_S = 15.0  # how long a request looks for a replica that answers
_PAUSES = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)  # between rounds over every replica


@dataclass(frozen=True)
class Answer:
    status: int
    content: bytes
    media_type: str
    replica: str | None  # host:port that answered; None when none did
    tried: int


class Traffic:
    """One shared HTTP client (keep-alive to the replicas) and a round-robin counter."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=2.0),
                                    limits=httpx.Limits(max_connections=256,
                                                        max_keepalive_connections=64))
        self._next = itertools.count()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def predict(self, replicas: Callable[[], Sequence[Sequence[str]]], body: bytes,
                path: str = "/predict") -> Answer:
        """Send `body` to `path` of one replica. ``replicas()`` gives pools of
        ``host:port`` in order of preference (the canary's or the main replicas first,
        as the split drew; the other pool is the fallback); it is read again each round
        so that a restarted replica rejoins."""
        deadline = time.monotonic() + RETRY_FOR_S
        tried = 0
        last = "no replica is running"
        for rnd in itertools.count():
            for pool in replicas():
                addrs = list(pool)
                if not addrs:
                    continue
                with self._lock:
                    start = next(self._next)
                for i in range(len(addrs)):
                    addr = addrs[(start + i) % len(addrs)]
                    tried += 1
                    try:
                        r = self._client.post(f"http://{addr}{path}", content=body,
                                              headers={"Content-Type": "application/json"})
                    except httpx.TransportError as e:
                        last = f"replica {addr}: {type(e).__name__}"
                        continue
                    if r.status_code == 503:
                        last = f"replica {addr}: busy (503)"
                        continue
                    return Answer(r.status_code, r.content,
                                  r.headers.get("content-type", "application/json"), addr,
                                  tried)
            pause = _PAUSES[min(rnd + 1, len(_PAUSES) - 1)]
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
        return Answer(503, f"no replica answered within {RETRY_FOR_S:g}s ({last}); "
                      "retry later".encode(), "text/plain", None, tried)
