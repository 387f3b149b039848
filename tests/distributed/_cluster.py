"""Parameter-server shards on threads of the test process (real zmq over loopback TCP)."""

from plinth.sparse.ps.server import serve_in_threads as shard_threads

__all__ = ["shard_threads"]
