"""The worker side of the parameter server: connections to every shard and remote tables.

:class:`PSClient` holds one zmq DEALER socket per shard. A pull splits the ids by shard
(:func:`~plinth.sparse.ps.routing.split_by_shard`), sends one request per shard (more only
when a request would exceed the message limit), then collects the replies — so all shards
work in parallel — and scatters the rows back into the caller's order. Pushes are
asynchronous: ``push`` sends and returns; at most ``max_pushes_in_flight`` pushes may be
unacknowledged (Persia's staleness bound), a further push first waits for the oldest.
Each shard answers its requests in order, so a pull sent after a push sees that push.

:class:`RemoteTable` is a :class:`~plinth.sparse.module.TableLike` over one table name:
the trainer's :class:`~plinth.sparse.module.SparseEmbedding` cannot tell it from a local
:class:`~plinth.sparse.table.EmbeddingTable`. ``prefetch(ids)`` sends the pull for the next
batch while the current step runs; the ``pull`` with equal ids collects it.

Errors (:mod:`plinth.sparse.ps.protocol`): a refused request raises ``ShardError`` with the
shard's message; no reply within ``timeout_s`` raises ``ShardUnavailable`` (the shard is
dead or stuck: the trainer exits non-zero and the platform restarts the gang).
Not thread-safe: one client per thread (zmq sockets belong to one thread).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import zmq

from plinth.sparse.config import TableConfig
from plinth.sparse.ps import protocol as P
from plinth.sparse.ps.routing import ShardSplit, split_by_shard

__all__ = ["PSClient", "PendingPull", "RemoteTable"]


@dataclass
class PendingPull:
    """A pull sent and not yet collected: per request (shard, request id, positions)."""

    table: str
    ids: np.ndarray
    dim: int
    requests: list[tuple[int, int, np.ndarray]]


class PSClient:
    """Connections to the shards at ``addresses`` (``host:port``, shard order)."""

    def __init__(self, addresses: list[str], *, timeout_s: float = 120.0,
                 max_pushes_in_flight: int = 2,
                 max_message_bytes: int = P.MAX_MESSAGE_BYTES) -> None:
        if not addresses:
            raise ValueError("PSClient needs at least one shard address")
        if max_pushes_in_flight < 0:
            raise ValueError("max_pushes_in_flight must be >= 0")
        self.addresses = list(addresses)
        self.num_shards = len(addresses)
        self.timeout_ms = int(timeout_s * 1000)
        self.max_pushes_in_flight = max_pushes_in_flight
        self.max_message_bytes = max_message_bytes
        self._ctx = zmq.Context()
        self._socks = []
        for addr in self.addresses:
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(f"tcp://{addr}")
            self._socks.append(s)
        self._next_id = 0
        self._replies: list[dict[int, P.Message]] = [{} for _ in addresses]
        self._acks: set[int] = set()  # push request ids whose reply is only checked
        self._push_rounds: deque[list[tuple[int, int]]] = deque()

    # ---- plumbing -----------------------------------------------------------------------
    def _send(self, shard: int, header: dict[str, Any], arrays: tuple = ()) -> int:
        self._next_id += 1
        rid = self._next_id
        self._socks[shard].send_multipart(P.encode({**header, "id": rid}, arrays), copy=False)
        return rid

    def _recv_one(self, shard: int) -> None:
        sock = self._socks[shard]
        if not sock.poll(self.timeout_ms, zmq.POLLIN):
            raise P.ShardUnavailable(
                f"shard {shard} ({self.addresses[shard]}) did not answer within "
                f"{self.timeout_ms / 1000:g}s; it died or is stuck")
        msg = P.decode(sock.recv_multipart(copy=False), self.max_message_bytes + P.MAX_HEADER_BYTES)
        rid = msg.header.get("id")
        if rid in self._acks:
            self._acks.discard(rid)
            _check(msg, shard)
        else:
            self._replies[shard][rid] = msg

    def _wait(self, shard: int, rid: int) -> P.Message:
        box = self._replies[shard]
        while rid not in box:
            self._recv_one(shard)
        return _check(box.pop(rid), shard)

    def _wait_ack(self, shard: int, rid: int) -> None:
        while rid in self._acks:
            self._recv_one(shard)

    def call_all(self, op: str, **fields: Any) -> list[dict[str, Any]]:
        """Send ``op`` to every shard at once; their replies' headers, in shard order."""
        rids = [self._send(s, {"op": op, **fields}) for s in range(self.num_shards)]
        return [self._wait(s, r).header for s, r in enumerate(rids)]

    # ---- operations ---------------------------------------------------------------------
    def hello(self, tables: dict[str, TableConfig]) -> list[dict[str, Any]]:
        """Handshake: check versions and shard numbering, declare the tables."""
        replies = self.call_all("hello", version=P.PROTOCOL_VERSION,
                                tables={n: c.to_dict() for n, c in tables.items()})
        for i, r in enumerate(replies):
            if r.get("shard") != i or r.get("num_shards") != self.num_shards:
                raise P.ProtocolError(
                    f"the server at {self.addresses[i]} is shard {r.get('shard')} of "
                    f"{r.get('num_shards')}, but this client lists it as shard {i} of "
                    f"{self.num_shards}; give every process the same shard addresses")
        return replies

    def _chunk(self, n: int, bytes_per_id: int) -> int:
        return max(1, (self.max_message_bytes - 1024) // bytes_per_id) if n else 1

    def send_pull(self, table: str, ids: np.ndarray, dim: int, train: bool = True) -> PendingPull:
        """Send the requests of a pull (one per shard, split further only above the message
        limit) and return without waiting."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        split: ShardSplit = split_by_shard(ids, self.num_shards)
        step = self._chunk(len(ids), 8 + 4 * dim)
        requests = []
        for s in range(self.num_shards):
            pos = split.positions(s)
            for lo in range(0, len(pos), step):
                part = pos[lo:lo + step]
                rid = self._send(s, {"op": "pull", "table": table, "train": train}, (ids[part],))
                requests.append((s, rid, part))
        return PendingPull(table, ids, dim, requests)

    def collect(self, pending: PendingPull) -> np.ndarray:
        """The rows ``(n, dim)`` float32 of a sent pull, in the order of its ids."""
        out = np.empty((len(pending.ids), pending.dim), dtype=np.float32)
        for s, rid, part in pending.requests:
            rows = self._wait(s, rid).arrays[0]
            out[part] = rows.reshape(len(part), pending.dim)
        return out

    def pull(self, table: str, ids: np.ndarray, dim: int, train: bool = True) -> np.ndarray:
        return self.collect(self.send_pull(table, ids, dim, train))

    def push(self, table: str, ids: np.ndarray, grads: np.ndarray, step: int,
             unique: bool = False, lr_scale: float = 1.0) -> None:
        """Send row gradients without waiting (``unique``: the caller guarantees distinct
        ids, so the shard skips summing duplicates; ``lr_scale``: the table's learning
        rate is multiplied by it for these rows, the worker's warm-up); at most
        ``max_pushes_in_flight`` pushes stay unacknowledged (0: wait for this one)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        grads = np.ascontiguousarray(grads, dtype=np.float32).reshape(len(ids), -1)
        while len(self._push_rounds) >= max(1, self.max_pushes_in_flight):
            self._wait_round(self._push_rounds.popleft())
        split = split_by_shard(ids, self.num_shards)
        step_ids = self._chunk(len(ids), 8 + 4 * grads.shape[1])
        sent = []
        for s in range(self.num_shards):
            pos = split.positions(s)
            for lo in range(0, len(pos), step_ids):
                part = pos[lo:lo + step_ids]
                rid = self._send(s, {"op": "push", "table": table, "step": int(step),
                                     "unique": bool(unique), "lr_scale": float(lr_scale)},
                                 (ids[part], grads[part]))
                self._acks.add(rid)
                sent.append((s, rid))
        self._push_rounds.append(sent)
        if self.max_pushes_in_flight == 0:
            self.drain()

    def _wait_round(self, sent: list[tuple[int, int]]) -> None:
        for s, rid in sent:
            self._wait_ack(s, rid)

    @property
    def pushes_in_flight(self) -> int:
        return len(self._push_rounds)

    def drain(self) -> None:
        """Wait until every push sent so far is applied."""
        while self._push_rounds:
            self._wait_round(self._push_rounds.popleft())

    def evict(self) -> int:
        return sum(int(r["evicted"]) for r in self.call_all("evict"))

    def stats(self) -> list[dict[str, Any]]:
        return self.call_all("stats")

    def save(self, directory: str) -> list[str]:
        """Every shard writes its part of a checkpoint into ``directory`` (pushes drained
        first, so the files hold every update this client sent)."""
        self.drain()
        return [r["file"] for r in self.call_all("save", dir=str(directory))]

    def restore(self, directory: str) -> list[dict[str, int]]:
        self.drain()
        return [r["rows"] for r in self.call_all("restore", dir=str(directory))]

    def export_delta(self, directory: str) -> list[dict[str, int]]:
        self.drain()
        return [r["rows"] for r in self.call_all("delta", dir=str(directory))]

    def shutdown(self) -> None:
        """Tell every shard to exit (0)."""
        self.drain()
        self.call_all("shutdown")

    def close(self) -> None:
        for s in self._socks:
            s.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check(msg: P.Message, shard: int) -> P.Message:
    if not msg.header.get("ok"):
        raise P.ShardError(f"shard {shard}: {msg.header.get('error', 'request failed')}")
    return msg


class RemoteTable:
    """A ``TableLike`` for table ``config.name`` on the shards of ``client``.

    ``advance(step)`` sets the step stamped on later pushes (the shards advance their
    tables to it); ``evict()`` runs TTL/capacity eviction on every shard.
    """

    def __init__(self, client: PSClient, config: TableConfig) -> None:
        self.client, self.config = client, config
        self.name, self.dim = config.name, config.dim
        self.step = 0
        self.lr_scale = 1.0  # sent with every push (the trainer's warm-up)
        self.prefetch_hits = 0  # pulls served by a prefetch / pulled on the spot
        self.prefetch_misses = 0
        # Sent pulls (PendingPull) or collected ones ((ids, rows)), oldest first.
        self._prefetched: deque[PendingPull | tuple[np.ndarray, np.ndarray]] = deque()

    def prefetch(self, ids: np.ndarray, train: bool = True) -> None:
        """Send the pull of ``ids`` now; the next ``pull`` of equal ids collects it."""
        self._prefetched.append(self.client.send_pull(self.name, ids, self.dim, train))

    def settle(self) -> None:
        """Collect the prefetched pulls now (their rows are kept for the next ``pull``), so
        that no request of this table is left unanswered (before a checkpoint)."""
        self._prefetched = deque(self._resolve(p) for p in self._prefetched)

    def _resolve(self, p: PendingPull | tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
        return p if isinstance(p, tuple) else (p.ids, self.client.collect(p))

    def pull(self, ids: np.ndarray, train: bool = True) -> np.ndarray:
        """Rows for ``ids``: the oldest prefetched pull of equal ids if there is one (older
        prefetches are dropped: their batch has passed), else a pull now."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        for k, p in enumerate(self._prefetched):
            got = p.ids if isinstance(p, PendingPull) else p[0]
            if len(got) == len(ids) and np.array_equal(got, ids):
                for _ in range(k):  # stale: collect their replies and drop them
                    self._resolve(self._prefetched.popleft())
                self.prefetch_hits += 1
                return self._resolve(self._prefetched.popleft())[1]
        self.prefetch_misses += 1
        return self.client.pull(self.name, ids, self.dim, train)

    accepts_unique = True  # SparseEmbedding passes unique=True for its deduplicated ids

    def push(self, ids: np.ndarray, grads: np.ndarray, unique: bool = False) -> None:
        self.client.push(self.name, ids, grads, self.step, unique=unique,
                         lr_scale=self.lr_scale)

    def set_lr_scale(self, scale: float) -> None:
        """Multiply the table's learning rate by ``scale`` for the following pushes."""
        self.lr_scale = float(scale)

    def advance(self, step: int | None = None, now: float | None = None) -> None:
        self.step = self.step + 1 if step is None else int(step)

    def evict(self) -> int:
        return self.client.evict()

    def __repr__(self) -> str:
        return f"RemoteTable(name={self.name!r}, dim={self.dim}, shards={self.client.num_shards})"
