"""Vectorized 64-bit feature hashing: (field, raw value) -> feature id.

A feature id is ``mix64(mix64(raw) XOR salt64(field))`` reinterpreted as int64, where
``mix64`` is the splitmix64 finalizer (a bijection on 64-bit words) and ``salt64`` hashes
the field name. Two consequences the rest of Plinth relies on:

* Within one field, distinct raw integers never collide (a composition of bijections).
* Across fields, ids collide only by chance (probability about n^2 / 2^64 for n ids), so
  several fields can share one dynamic table without a vocabulary.

Strings are hashed byte-wise (FNV-1a over the UTF-8 bytes, then the same finalizer) in a
compiled loop over an Arrow string array's offset and data buffers: no per-row Python.

All functions return ``np.int64`` arrays of the same length as their input. Nulls (in
Arrow input) hash to a per-field "missing" id, :func:`missing_id`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pyarrow as pa

from plinth.sparse._numba_cache import drop_stale_numba_cache

drop_stale_numba_cache(__file__)  # before importing compiled code from siblings

from plinth.sparse._hash import mix64 as _mix

__all__ = ["hash_ints", "hash_strings", "hash_values", "missing_id", "mix64", "salt64"]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MISSING = np.uint64(0x6D697373696E6721)  # "missing!" — any fixed constant works
_MISSING_C = _MISSING  # module global read by the compiled kernel


@numba.njit(cache=True, nogil=True)
def _hash_ints_kernel(raw: np.ndarray, salt: np.uint64, out: np.ndarray) -> None:
    for i in range(raw.shape[0]):
        out[i] = _mix(_mix(np.uint64(raw[i])) ^ salt)


@numba.njit(cache=True, nogil=True)
def _hash_bytes_kernel(
    data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, salt: np.uint64, out: np.ndarray
) -> None:
    for i in range(offsets.shape[0] - 1):
        if not valid[i]:
            out[i] = _mix(_MISSING_C ^ salt)
            continue
        h = np.uint64(0xCBF29CE484222325)
        start = offsets[i]
        stop = offsets[i + 1]
        for j in range(start, stop):
            h = (h ^ np.uint64(data[j])) * np.uint64(0x100000001B3)
        # Mixing in the length separates "" from other short strings with equal FNV state.
        out[i] = _mix(_mix(h ^ np.uint64(stop - start)) ^ salt)



@numba.njit(cache=True, nogil=True)
def _hash_ints_kernel_nosalt(raw: np.ndarray, out: np.ndarray) -> None:
    for i in range(raw.shape[0]):
        out[i] = _mix(raw[i])


def mix64(x: np.ndarray | int) -> np.ndarray:
    """The splitmix64 finalizer applied element-wise; a bijection on 64-bit words."""
    arr = np.ascontiguousarray(np.atleast_1d(np.asarray(x)).astype(np.int64, copy=False))
    out = np.empty(arr.shape[0], dtype=np.uint64)
    _hash_ints_kernel_nosalt(arr.view(np.uint64), out)
    return out.view(np.int64)


def salt64(field: str | int) -> np.uint64:
    """The 64-bit salt of a field name (or an explicit integer salt)."""
    if isinstance(field, int | np.integer):
        return np.uint64(int(field) & 0xFFFFFFFFFFFFFFFF)
    if not isinstance(field, str):
        raise TypeError(f"a field salt must be a str or int, got {type(field).__name__}")
    h = int(_FNV_OFFSET)
    for b in field.encode("utf-8"):  # field names are short; this runs once per field
        h = ((h ^ b) * int(_FNV_PRIME)) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(h)


def missing_id(field: str | int) -> int:
    """The id every null value of ``field`` hashes to."""
    return int(np.array(_mix(_MISSING ^ salt64(field)), dtype=np.uint64).view(np.int64))


def hash_ints(raw: np.ndarray | Sequence[int], field: str | int) -> np.ndarray:
    """Hash integer raw values of ``field`` to int64 feature ids.

    ``raw`` may be any integer array (signed or unsigned, any width); values are taken as
    their 64-bit two's-complement pattern. Returns a new contiguous ``np.int64`` array.
    """
    arr = np.asarray(raw)
    if arr.dtype.kind not in "iub":
        raise TypeError(
            f"hash_ints needs integer values for field {field!r}, got dtype {arr.dtype}; "
            "use hash_strings for text"
        )
    arr = np.ascontiguousarray(arr.reshape(-1).astype(np.int64, copy=False))
    out = np.empty(arr.shape[0], dtype=np.uint64)
    _hash_ints_kernel(arr.view(np.uint64), salt64(field), out)
    return out.view(np.int64)


def hash_strings(raw: pa.Array | pa.ChunkedArray | Sequence[str | None], field: str | int) -> np.ndarray:
    """Hash strings (UTF-8) of ``field`` to int64 feature ids; nulls give :func:`missing_id`.

    Accepts an Arrow string/large_string/binary array (zero-copy), or any sequence of
    ``str``/``None`` (converted to Arrow once, in C).
    """
    if isinstance(raw, pa.ChunkedArray):
        parts = [hash_strings(c, field) for c in raw.chunks]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if not isinstance(raw, pa.Array):
        raw = pa.array(np.asarray(raw, dtype=object) if not isinstance(raw, list) else raw,
                       type=pa.large_string())
    if pa.types.is_string(raw.type) or pa.types.is_binary(raw.type) or pa.types.is_large_string(raw.type):
        raw = raw.cast(pa.large_binary())
    elif not pa.types.is_large_binary(raw.type):
        raise TypeError(f"hash_strings needs a string column for field {field!r}, got {raw.type}")
    n = len(raw)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out.view(np.int64)
    bufs = raw.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[raw.offset : raw.offset + n + 1]
    data = (
        np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.empty(0, np.uint8)
    )
    if raw.null_count:
        valid = raw.is_valid().to_numpy(zero_copy_only=False)
    else:
        valid = np.ones(n, dtype=np.bool_)
    _hash_bytes_kernel(data, offsets, valid, salt64(field), out)
    return out.view(np.int64)


def hash_values(raw: np.ndarray | pa.Array | pa.ChunkedArray | Sequence, field: str | int) -> np.ndarray:
    """Hash integers or strings of ``field``, choosing by the input's type."""
    if isinstance(raw, pa.ChunkedArray | pa.Array):
        typ = raw.type
        if pa.types.is_integer(typ):
            if raw.null_count:
                raise ValueError(
                    f"field {field!r} has nulls; drop them (the reader encodes them as empty bags)"
                )
            return hash_ints(raw.to_numpy(), field)
        return hash_strings(raw, field)
    arr = np.asarray(raw)
    if arr.dtype.kind in "iub":
        return hash_ints(arr, field)
    return hash_strings(list(arr.reshape(-1)), field)
