"""Parameter-server shards on threads of the test process (real zmq over loopback TCP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from plinth.sparse.ps.server import ShardServer
from plinth.sparse.ps.shard import Shard


@contextmanager
def shard_threads(n: int) -> Iterator[list[str]]:
    """Start ``n`` shards on free ports; yield their ``host:port`` addresses; stop them."""
    servers = [ShardServer(Shard(i, n)) for i in range(n)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield [f"127.0.0.1:{s.port}" for s in servers]
    finally:
        for s in servers:
            s.stop()
        for t in threads:
            t.join(timeout=10)
