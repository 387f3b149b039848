"""Jagged batches: the sparse half of a training batch, after TorchRec's KeyedJaggedTensor.

A :class:`KeyedJaggedTensor` (KJT) holds, for F keys (fields) and a batch of B samples, one
flat ``values`` array of feature ids, key-major, plus ``lengths`` (how many ids each
(key, sample) slot has) or ``offsets`` (where each slot starts); the missing one is derived
on first use. Optional ``weights`` (one float per id) weight the ids when pooled.

Layout for keys ``["user", "tags"]``, B = 3 (a slot may be empty)::

                 |<------ user ------>|<------------ tags ----------->|
    sample       |  b0     b1     b2  |  b0      b1        b2         |
    lengths      |  1      1      1   |  2       0         3          |   (F * B,)
    offsets   0  |  1      2      3   |  5       5         8          |   (F * B + 1,)
    values       |  u0     u1     u2  |  t0 t1             t2 t3 t4   |   (sum(lengths),)
    weights      |  1.0    1.0    1.0 |  0.5 0.5           1  1  1    |   (sum(lengths),) or None

``stride()`` is B. ``kjt["tags"]`` is a :class:`JaggedTensor` with that key's values and
lengths. Construction does no checking (it sits on the hot path); call :meth:`validate`
where data enters the system (readers, servers, user code) — it raises
:class:`BatchError` with a message that says what to fix.

A :class:`Batch` is a KJT, a dense float32 matrix ``(B, n_dense)`` and float32 labels
``(B,)``.

All arrays are numpy: ids are int64, lengths/offsets int64, weights/dense/labels float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Batch", "BatchError", "JaggedTensor", "KeyedJaggedTensor"]


class BatchError(ValueError):
    """A batch or jagged tensor is malformed; the message says which part and how to fix it."""


@dataclass(frozen=True)
class JaggedTensor:
    """One key's slice of a KJT: ``values`` (N,), ``lengths`` (B,), optional ``weights`` (N,)."""

    values: np.ndarray
    lengths: np.ndarray
    weights: np.ndarray | None = None

    def offsets(self) -> np.ndarray:
        """(B + 1,) int64 start positions, ``offsets[0] == 0`` and ``offsets[-1] == N``."""
        return _offsets_from_lengths(self.lengths)

    def to_lists(self) -> list[list[int]]:
        """Per-sample lists of ids (for debugging and tests; not for hot paths)."""
        off = self.offsets()
        return [self.values[off[i] : off[i + 1]].tolist() for i in range(len(self.lengths))]


def _offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    out = np.empty(lengths.shape[0] + 1, dtype=np.int64)
    out[0] = 0
    np.cumsum(lengths, out=out[1:])
    return out


class KeyedJaggedTensor:
    """Keys + flat values + lengths or offsets (+ weights). See the module docstring.

    Prefer the named constructors: :meth:`from_lengths`, :meth:`from_offsets`,
    :meth:`from_dict`, :meth:`empty`, :meth:`concat`.
    """

    __slots__ = ("_index", "_keys", "_lengths", "_offsets", "_stride", "_values", "_weights")

    def __init__(
        self,
        keys: Sequence[str],
        values: np.ndarray,
        lengths: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        stride: int | None = None,
    ) -> None:
        if lengths is None and offsets is None:
            raise BatchError("a KeyedJaggedTensor needs lengths or offsets; pass one of them")
        self._keys = list(keys)
        self._values = values
        self._lengths = lengths
        self._offsets = offsets
        self._weights = weights
        n_slots = len(lengths) if lengths is not None else len(offsets) - 1
        if stride is None:
            stride = n_slots // len(self._keys) if self._keys else 0
        self._stride = int(stride)
        self._index: dict[str, int] | None = None

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def from_lengths(
        cls,
        keys: Sequence[str],
        values: np.ndarray | Sequence[int],
        lengths: np.ndarray | Sequence[int],
        weights: np.ndarray | Sequence[float] | None = None,
    ) -> KeyedJaggedTensor:
        """Build from key-major ``lengths`` of shape (F * B,)."""
        return cls(
            keys,
            np.asarray(values, dtype=np.int64),
            lengths=np.asarray(lengths, dtype=np.int64),
            weights=None if weights is None else np.asarray(weights, dtype=np.float32),
        )

    @classmethod
    def from_offsets(
        cls,
        keys: Sequence[str],
        values: np.ndarray | Sequence[int],
        offsets: np.ndarray | Sequence[int],
        weights: np.ndarray | Sequence[float] | None = None,
    ) -> KeyedJaggedTensor:
        """Build from key-major ``offsets`` of shape (F * B + 1,)."""
        return cls(
            keys,
            np.asarray(values, dtype=np.int64),
            offsets=np.asarray(offsets, dtype=np.int64),
            weights=None if weights is None else np.asarray(weights, dtype=np.float32),
        )

    @classmethod
    def from_dict(cls, jts: Mapping[str, JaggedTensor]) -> KeyedJaggedTensor:
        """Build from ``{key: JaggedTensor}``; every key must have the same batch size.

        Weights are kept when every key has them, and filled with 1.0 for keys without
        them when some do.
        """
        keys = list(jts)
        if not keys:
            return cls.empty()
        sizes = {k: len(jt.lengths) for k, jt in jts.items()}
        if len(set(sizes.values())) > 1:
            raise BatchError(f"keys have different batch sizes {sizes}; give every key B slots")
        values = np.concatenate([np.asarray(jt.values, dtype=np.int64) for jt in jts.values()])
        lengths = np.concatenate([np.asarray(jt.lengths, dtype=np.int64) for jt in jts.values()])
        weights = None
        if any(jt.weights is not None for jt in jts.values()):
            weights = np.concatenate(
                [
                    np.asarray(jt.weights, dtype=np.float32)
                    if jt.weights is not None
                    else np.ones(len(jt.values), dtype=np.float32)
                    for jt in jts.values()
                ]
            )
        return cls(keys, values, lengths=lengths, weights=weights, stride=sizes[keys[0]])

    @classmethod
    def empty(cls, keys: Sequence[str] = (), batch_size: int = 0) -> KeyedJaggedTensor:
        """A KJT with no ids: every one of the ``len(keys) * batch_size`` slots is empty."""
        return cls(
            keys,
            np.empty(0, dtype=np.int64),
            lengths=np.zeros(len(keys) * batch_size, dtype=np.int64),
            stride=batch_size,
        )

    @classmethod
    def concat(cls, kjts: Sequence[KeyedJaggedTensor]) -> KeyedJaggedTensor:
        """Join KJTs of the same batch size key-wise (keys of all inputs, in order)."""
        if not kjts:
            return cls.empty()
        strides = {k.stride() for k in kjts}
        if len(strides) > 1:
            raise BatchError(f"cannot concat KJTs of batch sizes {sorted(strides)}; use one size")
        keys = [key for k in kjts for key in k.keys()]  # noqa: SIM118 (a method, not a dict)
        if len(set(keys)) != len(keys):
            raise BatchError(f"concat would repeat keys {keys}; rename the duplicates")
        any_w = any(k.weights_or_none() is not None for k in kjts)
        weights = None
        if any_w:
            weights = np.concatenate(
                [
                    k.weights() if k.weights_or_none() is not None
                    else np.ones(len(k.values()), dtype=np.float32)
                    for k in kjts
                ]
            )
        return cls(
            keys,
            np.concatenate([k.values() for k in kjts]),
            lengths=np.concatenate([k.lengths() for k in kjts]),
            weights=weights,
            stride=strides.pop(),
        )

    # ---- accessors ----------------------------------------------------------------------
    def keys(self) -> list[str]:
        return self._keys

    def values(self) -> np.ndarray:
        return self._values

    def weights(self) -> np.ndarray:
        if self._weights is None:
            raise BatchError("this KJT has no weights; use weights_or_none()")
        return self._weights

    def weights_or_none(self) -> np.ndarray | None:
        return self._weights

    def stride(self) -> int:
        """The batch size B."""
        return self._stride

    def lengths(self) -> np.ndarray:
        if self._lengths is None:
            self._lengths = np.diff(self._offsets).astype(np.int64, copy=False)
        return self._lengths

    def offsets(self) -> np.ndarray:
        if self._offsets is None:
            self._offsets = _offsets_from_lengths(self._lengths)
        return self._offsets

    def length_per_key(self) -> np.ndarray:
        """(F,) number of ids per key."""
        return np.diff(self.offset_per_key())

    def offset_per_key(self) -> np.ndarray:
        """(F + 1,) where each key's ids start in ``values``."""
        if self._stride == 0:
            return np.zeros(len(self._keys) + 1, dtype=np.int64)
        return self.offsets()[:: self._stride].copy()

    def __getitem__(self, key: str) -> JaggedTensor:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self._keys)}
        try:
            i = self._index[key]
        except KeyError:
            raise KeyError(f"no key {key!r} in this batch; keys are {self._keys}") from None
        b = self._stride
        off = self.offsets()
        start, stop = int(off[i * b]), int(off[(i + 1) * b])
        w = None if self._weights is None else self._weights[start:stop]
        return JaggedTensor(self._values[start:stop], self.lengths()[i * b : (i + 1) * b], w)

    def to_dict(self) -> dict[str, JaggedTensor]:
        return {k: self[k] for k in self._keys}

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return (
            f"KeyedJaggedTensor(keys={self._keys}, stride={self._stride}, "
            f"values={len(self._values)} ids, weights={'yes' if self._weights is not None else 'no'})"
        )

    # ---- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        """Check every invariant; raise :class:`BatchError` saying what to fix.

        Call where data enters (readers, servers, user code) — not on the hot path.
        """
        keys = self._keys
        if any(not isinstance(k, str) or not k for k in keys):
            raise BatchError(f"keys must be non-empty strings, got {keys!r}")
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise BatchError(f"keys {dup} appear more than once; give each field one key")
        v = self._values
        if not isinstance(v, np.ndarray) or v.ndim != 1:
            raise BatchError("values must be a 1-D numpy array of int64 feature ids")
        if v.dtype != np.int64:
            raise BatchError(f"values must be int64 feature ids, got {v.dtype}; hash them first "
                             "(plinth.sparse.hashing.hash_values)")
        b = self._stride
        if b < 0:
            raise BatchError(f"stride (batch size) must be >= 0, got {b}")
        n_slots = len(keys) * b
        if self._lengths is not None:
            ln = self._lengths
            if not isinstance(ln, np.ndarray) or ln.ndim != 1 or ln.dtype.kind not in "iu":
                raise BatchError("lengths must be a 1-D integer numpy array")
            if ln.shape[0] != n_slots:
                raise BatchError(
                    f"lengths has {ln.shape[0]} entries but {len(keys)} keys x batch size {b} "
                    f"= {n_slots} slots; give one length per (key, sample), key-major"
                )
            if ln.size and ln.min() < 0:
                raise BatchError(f"lengths must be >= 0, found {int(ln.min())}")
            if int(ln.sum()) != v.shape[0]:
                raise BatchError(
                    f"lengths sum to {int(ln.sum())} but values has {v.shape[0]} ids; "
                    "they must match"
                )
        if self._offsets is not None:
            off = self._offsets
            if not isinstance(off, np.ndarray) or off.ndim != 1 or off.dtype.kind not in "iu":
                raise BatchError("offsets must be a 1-D integer numpy array")
            if off.shape[0] != n_slots + 1:
                raise BatchError(
                    f"offsets has {off.shape[0]} entries, expected {n_slots + 1} "
                    f"({len(keys)} keys x batch size {b} + 1)"
                )
            if off[0] != 0 or off[-1] != v.shape[0]:
                raise BatchError(
                    f"offsets must start at 0 and end at len(values)={v.shape[0]}, "
                    f"got {int(off[0])}..{int(off[-1])}"
                )
            if off.size > 1 and np.any(np.diff(off) < 0):
                raise BatchError("offsets must be non-decreasing")
            if self._lengths is not None and not np.array_equal(np.diff(off), self._lengths):
                raise BatchError("lengths and offsets disagree; pass only one of them")
        if self._weights is not None:
            w = self._weights
            if not isinstance(w, np.ndarray) or w.shape != v.shape:
                raise BatchError(f"weights must have the shape of values {v.shape}")
            if w.dtype != np.float32:
                raise BatchError(f"weights must be float32, got {w.dtype}")
            if not np.all(np.isfinite(w)):
                raise BatchError("weights contain NaN or infinity")


@dataclass
class Batch:
    """One training/eval batch: sparse ids, dense features and labels for B samples.

    ``sparse``: KJT with stride B; ``dense``: float32 (B, n_dense) (n_dense may be 0);
    ``labels``: float32 (B,) in [0, 1]; ``sample_ids`` optional int64 (B,) positions in the
    source data (for debugging and exact resume checks); ``weights`` optional float32 (B,)
    sample weights (finite, >= 0) that scale each sample's share of the training loss.
    """

    sparse: KeyedJaggedTensor
    dense: np.ndarray
    labels: np.ndarray
    sample_ids: np.ndarray | None = field(default=None)
    weights: np.ndarray | None = field(default=None)

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    def validate(self) -> None:
        """Check shapes, dtypes and values; raise :class:`BatchError` saying what to fix."""
        self.sparse.validate()
        n = self.labels.shape[0] if isinstance(self.labels, np.ndarray) else None
        if n is None or self.labels.ndim != 1:
            raise BatchError("labels must be a 1-D float32 numpy array with one label per sample")
        if self.sparse.keys() and self.sparse.stride() != n:
            raise BatchError(
                f"sparse batch size {self.sparse.stride()} != {n} labels; "
                "every part of a batch must have the same number of samples"
            )
        if not isinstance(self.dense, np.ndarray) or self.dense.ndim != 2:
            raise BatchError("dense must be a 2-D float32 array of shape (batch, n_dense)")
        if self.dense.shape[0] != n:
            raise BatchError(f"dense has {self.dense.shape[0]} rows but there are {n} labels")
        if self.dense.dtype != np.float32 or self.labels.dtype != np.float32:
            raise BatchError(
                f"dense and labels must be float32, got {self.dense.dtype} and {self.labels.dtype}"
            )
        if not np.all(np.isfinite(self.dense)):
            bad = np.argwhere(~np.isfinite(self.dense))[0]
            raise BatchError(
                f"dense feature column {int(bad[1])} of sample {int(bad[0])} is NaN or infinite; "
                "fill missing numeric values (the schema's `fill`)"
            )
        if n and (not np.all(np.isfinite(self.labels)) or self.labels.min() < 0
                  or self.labels.max() > 1):
            raise BatchError("labels must be finite and in [0, 1] (click = 1, no click = 0)")
        w = self.weights
        if w is not None and (not isinstance(w, np.ndarray) or w.shape != (n,)
                              or w.dtype != np.float32):
            raise BatchError(f"weights must be a 1-D float32 array with one weight per sample ({n})")
        if w is not None and n and (not np.all(np.isfinite(w)) or w.min() < 0):
            raise BatchError("sample weights must be finite and >= 0")
