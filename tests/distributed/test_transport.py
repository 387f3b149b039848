"""Transport: a remote table behaves exactly like a local one; the handshake, limits and
errors say what is wrong; a peer speaking something else does not hurt the shard."""

import socket

import numpy as np
import pytest
import zmq

from plinth.sparse.config import OptimizerConfig, TableConfig
from plinth.sparse.ps import protocol as P
from plinth.sparse.ps.client import PSClient, RemoteTable
from plinth.sparse.table import EmbeddingTable

from ._cluster import shard_threads

CFG = TableConfig(name="emb", dim=8, optimizer=OptimizerConfig(kind="adagrad", lr=0.1))


def _train_both(remote: RemoteTable, local: EmbeddingTable, steps: int, seed: int = 0,
                first_step: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for step in range(first_step, first_step + steps):
        ids = np.unique(rng.integers(0, 2000, 600))
        a, b = remote.pull(ids), local.pull(ids)
        assert np.array_equal(a, b), f"step {step}: remote rows differ from local rows"
        g = rng.normal(size=a.shape).astype(np.float32)
        remote.advance(step)
        local.advance(step)
        remote.push(ids, g, unique=True)
        local.push(ids, g, unique=True)


@pytest.mark.parametrize("shards", [1, 3])
def test_remote_table_equals_local_table(shards: int) -> None:
    with shard_threads(shards) as addrs, PSClient(addrs, max_pushes_in_flight=0) as c:
        c.hello({"emb": CFG})
        remote, local = RemoteTable(c, CFG), EmbeddingTable(CFG)
        _train_both(remote, local, steps=12)
        ids = np.arange(-5, 2100)
        assert np.array_equal(remote.pull(ids, train=False), local.pull(ids, train=False))
        stats = c.stats()
        assert sum(s["rows"]["emb"] for s in stats) == len(local)
        assert all(s["requests"] > 0 and s["bytes"]["emb"] > 0 for s in stats)


def test_warm_up_scale_travels_with_the_push() -> None:
    """A worker's warm-up factor reaches the shard's optimizer, as set_lr_scale on a local
    table does (distributed training must match single-process training)."""
    with shard_threads(2) as addrs, PSClient(addrs, max_pushes_in_flight=0) as c:
        c.hello({"emb": CFG})
        remote, local = RemoteTable(c, CFG), EmbeddingTable(CFG)
        for k, scale in enumerate((0.25, 0.5, 1.0)):
            remote.set_lr_scale(scale)
            local.set_lr_scale(scale)
            _train_both(remote, local, steps=3, seed=k, first_step=1 + 3 * k)
        ids = np.arange(2000)
        assert np.array_equal(remote.pull(ids, train=False), local.pull(ids, train=False))


def test_async_pushes_stay_bounded_and_drain_applies_them() -> None:
    with shard_threads(2) as addrs, PSClient(addrs, max_pushes_in_flight=3) as c:
        c.hello({"emb": CFG})
        remote, local = RemoteTable(c, CFG), EmbeddingTable(CFG)
        ids = np.arange(100)
        remote.pull(ids)
        local.pull(ids)
        for step in range(1, 11):
            g = np.full((100, 8), 0.01 * step, dtype=np.float32)
            remote.advance(step)
            remote.push(ids, g)
            local.push(ids, g, unique=True)
            assert c.pushes_in_flight <= 3
        c.drain()
        assert c.pushes_in_flight == 0
        assert np.array_equal(remote.pull(ids, train=False), local.pull(ids, train=False))


def test_duplicate_ids_in_a_push_are_summed_like_a_local_table() -> None:
    with shard_threads(2) as addrs, PSClient(addrs, max_pushes_in_flight=0) as c:
        c.hello({"emb": CFG})
        remote, local = RemoteTable(c, CFG), EmbeddingTable(CFG)
        ids = np.array([5, 9, 5, 7, 9, 5])
        remote.pull(ids)
        local.pull(ids)
        g = np.arange(48, dtype=np.float32).reshape(6, 8) / 100
        remote.push(ids, g)
        local.push(ids, g)
        assert np.array_equal(remote.pull(ids, train=False), local.pull(ids, train=False))


def test_prefetch_is_collected_by_the_matching_pull_and_a_mismatch_falls_back() -> None:
    with shard_threads(2) as addrs, PSClient(addrs) as c:
        c.hello({"emb": CFG})
        remote, local = RemoteTable(c, CFG), EmbeddingTable(CFG)

        def requests() -> int:
            return sum(s["requests"] for s in c.stats())

        a, b, other = np.arange(50), np.arange(50, 90), np.arange(100, 120)
        remote.prefetch(a)
        remote.prefetch(b)
        assert np.array_equal(remote.pull(a), local.pull(a))  # collected, not pulled again
        assert requests() == 4  # 2 prefetches x 2 shards
        assert np.array_equal(remote.pull(other), local.pull(other))  # no match: pulled now
        assert np.array_equal(remote.pull(b), local.pull(b))  # still waiting for its pull
        assert requests() == 6


def test_large_requests_are_split_under_the_message_limit() -> None:
    with shard_threads(2) as addrs, PSClient(addrs, max_message_bytes=4096,
                                             max_pushes_in_flight=0) as c:
        c.hello({"emb": CFG})
        remote, local = RemoteTable(c, CFG), EmbeddingTable(CFG)
        _train_both(remote, local, steps=3)  # 600 ids x 40 B > 4 KiB: several requests
        assert sum(s["requests"] for s in c.stats()) > 2 * 3 * 2


def test_refused_requests_name_the_problem() -> None:
    with shard_threads(1) as addrs, PSClient(addrs) as c:
        with pytest.raises(P.ShardError, match="no table 'nope'.*send hello"):
            c.pull("nope", np.arange(3), dim=8)
        c.hello({"emb": CFG})
        other = TableConfig(name="emb", dim=4)
        with pytest.raises(P.ShardError, match="another config"):
            c.hello({"emb": other})
        # A push is asynchronous: its refusal surfaces when its acknowledgement is read.
        c.push("emb", np.arange(3), np.zeros((3, 5), np.float32), step=1)
        with pytest.raises(P.ShardError, match="grads"):
            c.drain()
        # The shard still serves after the refusals.
        assert c.pull("emb", np.arange(3), dim=8).shape == (3, 8)


def test_version_mismatch_and_foreign_peers_get_clean_errors() -> None:
    with shard_threads(1) as addrs:
        host, port = addrs[0].split(":")
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.connect(f"tcp://{addrs[0]}")
        s.send_multipart([b"GET / HTTP/1.1\r\n\r\n"])
        reply = P.decode(s.recv_multipart())
        assert not reply.header["ok"] and "not a plinth parameter-server message" in \
            reply.header["error"]
        s.send_multipart([P.MAGIC + b'{"v": 99, "op": "hello", "id": 1}'])
        reply = P.decode(s.recv_multipart())
        assert "version 99" in reply.header["error"]
        s.close(0)
        ctx.term()
        # A raw TCP peer (no zmq handshake at all) is dropped by zmq; the shard lives on.
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"\x00" * 64 + b"hello?\r\n")
        with PSClient(addrs) as c:
            assert c.hello({"emb": CFG})[0]["shard"] == 0


def test_client_with_wrong_shard_numbering_is_refused() -> None:
    with shard_threads(2) as addrs, PSClient(list(reversed(addrs))) as c, \
            pytest.raises(P.ProtocolError, match="same shard addresses"):
        c.hello({"emb": CFG})


def test_a_dead_shard_is_reported_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with PSClient([f"127.0.0.1:{port}"], timeout_s=0.3) as c, \
            pytest.raises(P.ShardUnavailable, match="did not answer"):
        c.pull("emb", np.arange(3), dim=8)
