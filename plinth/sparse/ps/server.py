"""The zmq loop serving one :class:`~plinth.sparse.ps.shard.Shard`.

A ROUTER socket on ``127.0.0.1:port`` (port 0: any free port) answers requests one at a
time, in arrival order per connection — so a worker's pull sent after its push sees that
push — on the thread that owns the shard (tables are not thread-safe; the kernels release
the GIL, and parallelism comes from running several shards). A malformed message or a
failing operation gets an ``ok: false`` reply with the reason; nothing a peer sends stops
the loop except ``shutdown``. ``on_idle`` runs about every ``idle_s`` seconds (stats
reporting). ``zmq.MAXMSGSIZE`` bounds what a peer can make the shard allocate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import zmq

from plinth.sparse.ps import protocol as P
from plinth.sparse.ps.shard import Shard

__all__ = ["ShardServer", "serve_in_threads"]

log = logging.getLogger("plinth.ps.server")


class ShardServer:
    """Serve ``shard`` on ``host:port``; :attr:`port` is the bound port."""

    def __init__(self, shard: Shard, host: str = "127.0.0.1", port: int = 0, *,
                 max_message_bytes: int = P.MAX_MESSAGE_BYTES,
                 on_idle: Callable[[Shard], None] | None = None, idle_s: float = 5.0) -> None:
        self.shard = shard
        self.max_message_bytes = max_message_bytes
        self.on_idle, self.idle_s = on_idle, idle_s
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 1000)
        # Slightly above the limit: the header frame's bytes are not in max_message_bytes'
        # per-frame sense, and zmq applies MAXMSGSIZE per frame.
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes + P.MAX_HEADER_BYTES)
        if port:
            self._sock.bind(f"tcp://{host}:{port}")
            self.port = port
        else:
            self.port = self._sock.bind_to_random_port(f"tcp://{host}")
        self._stop = False

    def serve_forever(self) -> None:
        """Answer requests until a ``shutdown`` request (or :meth:`stop`)."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        next_idle = time.monotonic() + self.idle_s
        try:
            while not self._stop:
                if poller.poll(timeout=200):
                    frames = self._sock.recv_multipart(copy=False)
                    self._handle(frames[0], frames[1:])
                if self.on_idle is not None and time.monotonic() >= next_idle:
                    next_idle = time.monotonic() + self.idle_s
                    try:
                        self.on_idle(self.shard)
                    except Exception:
                        log.exception("idle hook failed")
        finally:
            self._sock.close()
            self._ctx.term()

    def stop(self) -> None:
        """Make :meth:`serve_forever` return after the current request (any thread)."""
        self._stop = True

    def _handle(self, identity: Any, frames: list[Any]) -> None:
        req_id = None
        try:
            msg = P.decode(frames, self.max_message_bytes)
            req_id = msg.header.get("id")
            header, arrays = self._dispatch(msg)
            reply = P.encode({"id": req_id, "ok": True, **header}, arrays)
        except (P.PSError, ValueError, TypeError, KeyError, OSError) as e:
            reply = P.encode({"id": req_id, "ok": False, "error": str(e) or type(e).__name__})
        self._sock.send_multipart([identity, *reply], copy=False)

    def _dispatch(self, msg: P.Message) -> tuple[dict[str, Any], list[np.ndarray]]:
        h, a, s = msg.header, msg.arrays, self.shard
        op = msg.op
        if op == "hello":
            if h.get("version") != P.PROTOCOL_VERSION:
                raise P.ProtocolError(f"client protocol version {h.get('version')!r}, shard "
                                      f"speaks {P.PROTOCOL_VERSION}")
            return s.hello(dict(h.get("tables") or {})), []
        if op == "pull":
            _need(a, 1, op)
            return {}, [s.pull(str(h["table"]), a[0], bool(h.get("train", True)))]
        if op == "push":
            _need(a, 2, op)
            updated = s.push(str(h["table"]), a[0], a[1], int(h.get("step", 0)),
                             bool(h.get("unique", False)), float(h.get("lr_scale", 1.0)))
            return {"updated": updated}, []
        if op == "evict":
            return {"evicted": s.evict()}, []
        if op == "stats":
            return s.stats(), []
        if op == "save":
            return {"file": s.save(str(h["dir"]))}, []
        if op == "restore":
            return {"rows": s.restore(str(h["dir"]))}, []
        if op == "delta":
            return {"rows": s.export_delta(str(h["dir"]))}, []
        if op == "shutdown":
            self._stop = True
            return {}, []
        raise P.ProtocolError(f"unknown op {op!r}; expected one of hello, pull, push, evict, "
                              "stats, save, restore, delta, shutdown")


def _need(arrays: list[np.ndarray], n: int, op: str) -> None:
    if len(arrays) != n:
        raise P.ProtocolError(f"{op} takes {n} arrays, got {len(arrays)}")


@contextmanager
def serve_in_threads(num_shards: int, host: str = "127.0.0.1") -> Iterator[list[str]]:
    """Run ``num_shards`` shards on threads of this process (free ports) and yield their
    ``host:port`` addresses; stop them on exit. For notebooks, tests and benchmarks: the
    kernels release the GIL, but the request loops share it — production shards are
    processes (``python -m plinth.sparse.server``)."""
    servers = [ShardServer(Shard(i, num_shards), host) for i in range(num_shards)]
    threads = [threading.Thread(target=s.serve_forever, name=f"plinth-ps-{i}", daemon=True)
               for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    try:
        yield [f"{host}:{s.port}" for s in servers]
    finally:
        for s in servers:
            s.stop()
        for t in threads:
            t.join(timeout=10)
