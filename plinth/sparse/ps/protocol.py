"""The parameter server's wire format and message vocabulary.

A message (request or reply) is one zmq multipart message::

    frame 0     b"PLPS" + JSON header   {"v": 1, "op": "pull", "id": 7, "table": "emb",
                                         "arrays": [["<i8", [4096]]], ...op fields}
    frame 1..k  raw bytes of the arrays the header lists, in order (C order, no copy:
                sent from and received into numpy buffers directly)

Replies carry the request's ``id`` and ``ok``; a failed request gets ``ok: false`` and an
``error`` text saying what to fix (the shard stays up). Requests (``op``):

=========  ==========================================  ===================================
op         request                                     reply
=========  ==========================================  ===================================
hello      ``version``, ``tables`` {name: TableConfig}  ``shard``, ``num_shards``, ``rows``
pull       ``table``, ``train``; ids (n,) int64         rows (n, dim) float32
push       ``table``, ``step``; ids (n,), grads (n,dim) ``updated``
evict      —                                           ``evicted``
stats      —                                           ``rows``, ``bytes``, ``requests_per_s``
save       ``dir``, ``checkpoint`` (id)                ``files``
restore    ``dir`` (a complete checkpoint)             ``rows``
delta      ``dir``                                     ``rows``
shutdown   —                                           ``ok``; then the shard exits 0
=========  ==========================================  ===================================

Limits: a header is at most :data:`MAX_HEADER_BYTES`; a message at most ``max_message_bytes``
(default :data:`MAX_MESSAGE_BYTES`): the client splits a larger pull/push into several
requests, and the server refuses (and zmq drops) anything bigger. The handshake (``hello``)
compares :data:`PROTOCOL_VERSION`; a peer with another version, or one that does not speak
this protocol at all, gets a clean error reply instead of a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "Message",
    "PSError",
    "ProtocolError",
    "ShardError",
    "ShardUnavailable",
    "decode",
    "encode",
]

PROTOCOL_VERSION = 1
MAGIC = b"PLPS"
MAX_HEADER_BYTES = 64 << 10
MAX_MESSAGE_BYTES = 256 << 20
_DTYPES = frozenset({"<i8", "<f4", "<f2", "<u4", "|u1", "<u2"})


class PSError(RuntimeError):
    """Root of the parameter server's errors::

        PSError
         ├── ProtocolError      a peer that speaks another version or another protocol
         ├── ShardError         the shard refused a request (message says what to fix)
         └── ShardUnavailable   no reply within the timeout (the shard died or hangs)
    """


class ProtocolError(PSError):
    pass


class ShardError(PSError):
    pass


class ShardUnavailable(PSError):
    pass


@dataclass
class Message:
    """A decoded message: the header's fields and the arrays (views of received frames)."""

    header: dict[str, Any]
    arrays: list[np.ndarray] = field(default_factory=list)

    @property
    def op(self) -> str:
        return str(self.header.get("op", ""))


def encode(header: dict[str, Any], arrays: list[np.ndarray] | tuple = ()) -> list[Any]:
    """Frames for ``header`` and ``arrays``: arrays go as their own buffers (no copy of a
    C-contiguous array; others are made contiguous once)."""
    arrs = [np.ascontiguousarray(a) for a in arrays]
    h = dict(header)
    h["v"] = PROTOCOL_VERSION
    h["arrays"] = [[a.dtype.str, list(a.shape)] for a in arrs]
    return [MAGIC + json.dumps(h, separators=(",", ":")).encode(), *arrs]


def decode(frames: list[Any], max_message_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse frames (bytes or zmq Frames) into a :class:`Message`; raise
    :class:`ProtocolError` saying what is wrong with a message that is not ours."""
    if not frames:
        raise ProtocolError("empty message; expected a plinth PS header frame")
    head = _buffer(frames[0])
    if len(head) < len(MAGIC) or bytes(head[: len(MAGIC)]) != MAGIC:
        raise ProtocolError("not a plinth parameter-server message (bad magic); "
                            "is the peer a plinth PS client/server?")
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(head[len(MAGIC):]))
    except ValueError:
        raise ProtocolError("header frame is not valid JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    if header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"peer speaks protocol version {header.get('v')!r}; this side "
                            f"speaks {PROTOCOL_VERSION}: run the same plinth version on both")
    specs = header.get("arrays", [])
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        raise ProtocolError(f"header lists {len(specs) if isinstance(specs, list) else '?'} "
                            f"arrays but {len(frames) - 1} data frames came")
    arrays = []
    total = len(head)
    for spec, fr in zip(specs, frames[1:], strict=True):
        try:
            dt, shape = np.dtype(spec[0]), tuple(int(x) for x in spec[1])
        except (TypeError, ValueError, IndexError):
            raise ProtocolError(f"bad array spec {spec!r}") from None
        if dt.str not in _DTYPES or any(x < 0 for x in shape):
            raise ProtocolError(f"array spec {spec!r} is not allowed")
        buf = _buffer(fr)
        total += len(buf)
        if total > max_message_bytes:
            raise ProtocolError(f"message exceeds {max_message_bytes} bytes")
        if len(buf) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise ProtocolError(f"frame of {len(buf)} bytes does not hold {spec!r}")
        arrays.append(np.frombuffer(buf, dtype=dt).reshape(shape))
    return Message(header, arrays)


def _buffer(frame: Any) -> memoryview:
    if isinstance(frame, bytes | bytearray | memoryview):
        return memoryview(frame)
    return frame.buffer  # zmq.Frame received with copy=False: no copy
