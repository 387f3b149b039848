"""Compiled kernels of :class:`plinth.sparse.table.EmbeddingTable`: hash index, row arena,
pull, push, eviction, export. Private: the table is the only caller and owns the invariants.

Data structures (all plain numpy arrays; kernels mutate them in place)::

    index  (open addressing, linear probing, multiply-shift home slot, any capacity)
      sn   int64[2 * cap_new]   interleaved (key, row + 1) pairs of the *new* slot array;
                                EMPTY (0) marks a free slot, so a fresh array is calloc'd
                                zero pages that need no initialising pass
      so   int64[2 * cap_old]   the *old* slot array while an incremental rehash runs
                                (length 0 otherwise); TOMB (-1) marks a migrated/deleted slot
      hdr  int64[HDR_LEN]       counters: entries in new / old, migration cursor, next unused
                                row, free-stack height

    arena  (rows live in fixed-size blocks of 2**shift rows that never move)
      bt   int64[n_blocks, 3]   base addresses of each block's values, state and meta arrays
      values block  float32 or float16 bits (uint16) [B, dim]
      state  block  float32 [B, state_width]
      meta   block  24-byte records: key i64 | count u32 | last_step u32 | last_time f32 |
                    flags u8 | pad
      free  int64[...]          stack of rows freed by eviction, reused first

A (key, row) pair sits in exactly one of ``sn``/``so``. Lookups probe ``sn`` then ``so``;
inserts go to ``sn`` only; ``migrate`` moves a bounded run of ``so`` slots into ``sn`` and
tombstones them there, so probe chains in ``so`` stay intact until it is dropped whole.
Deletions in ``sn`` use backward-shift (no tombstones accumulate in the live array).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import carray

from plinth.sparse._numba_cache import drop_stale_numba_cache

# Before the imports below, whose compiled code the cached kernels here inline: drop those
# kernels when any of those modules changed (see _numba_cache).
drop_stale_numba_cache(__file__)

from plinth.sparse._hash import mix64, normal_init, slot_of, uniform01
from plinth.sparse._pointers import (
    bits_f32,
    f32_bits,
    prefetch,
    ptr_f32,
    ptr_i64,
    ptr_u8,
    ptr_u16,
    ptr_u32,
)
from plinth.sparse.optimizers import update_row
from plinth.sparse.sketch import sketch_add, sketch_estimate

# Slot encoding: the second word of a slot holds row + 1.
EMPTY = 0
TOMB = -1

H_N_NEW = 0
H_N_OLD = 1
H_MIGRATE = 2
H_NEXT_ROW = 3
H_FREE = 4
# Score of the rows the last capacity eviction cut at (the highest score it removed, up to
# one histogram bucket); 0 before any. LFU admission competition compares newcomers to it.
H_FLOOR = 5
HDR_LEN = 8

META_BYTES = 24
M_KEY = 0
M_COUNT = 8
M_STEP = 12
M_TIME = 16
M_FLAGS = 20

F_LIVE = 1
F_DIRTY = 2
F_VICTIM = 4
F_NEW = 8  # created since the last delta export: a delta consumer has never seen it

META_DTYPE = np.dtype(
    {"names": ["key", "count", "last_step", "last_time", "flags"],
     "formats": ["<i8", "<u4", "<u4", "<f4", "u1"],
     "offsets": [M_KEY, M_COUNT, M_STEP, M_TIME, M_FLAGS],
     "itemsize": META_BYTES}
)

_INDEX_SALT = np.uint64(0x243F6A8885A308D3)  # pi digits: decorrelates slots from the init hash
_ADMIT_SALT = np.uint64(0x13198A2E03707344)
_U32_MAX = np.int64(0xFFFFFFFF)


# ---------------------------------------------------------------- float16 storage


@numba.njit(cache=True, inline="always")
def half_to_f32(h: np.uint16) -> np.float32:
    # F. Giesen, "half_to_float": exact for normals, subnormals, inf and NaN.
    hu = np.int64(h)
    o = (hu & 0x7FFF) << 13
    exp = o & (0x7C00 << 13)
    o += (127 - 15) << 23
    if exp == (0x7C00 << 13):
        o += (128 - 16) << 23
    elif exp == 0:
        o += 1 << 23
        o = np.int64(f32_bits(bits_f32(np.uint32(o)) - bits_f32(np.uint32(113 << 23))))
    o |= (hu & 0x8000) << 16
    return bits_f32(np.uint32(o))


@numba.njit(cache=True, inline="always")
def f32_to_half(f: np.float32) -> np.uint16:
    # F. Giesen, "float_to_half_fast3_rtne": round to nearest even, like numpy's astype.
    u = np.int64(f32_bits(f))
    sign = u & 0x80000000
    u ^= sign
    if u >= 0x47800000:
        o = np.int64(0x7E00) if u > 0x7F800000 else np.int64(0x7C00)
    elif u < (113 << 23):
        fv = bits_f32(np.uint32(u)) + bits_f32(np.uint32(0x3F000000))
        o = np.int64(f32_bits(fv)) - 0x3F000000
    else:
        mant_odd = (u >> 13) & 1
        u += ((15 - 127) << 23) + 0xFFF
        u += mant_odd
        o = u >> 13
    o |= sign >> 16
    return np.uint16(o & 0xFFFF)


@numba.njit(cache=True, nogil=True)
def to_half(x: np.ndarray, out: np.ndarray) -> None:
    """float32[n] -> float16 bits (uint16[n]); test hook for the conversion."""
    for i in range(x.shape[0]):
        out[i] = f32_to_half(x[i])


@numba.njit(cache=True, nogil=True)
def from_half(h: np.ndarray, out: np.ndarray) -> None:
    """float16 bits (uint16[n]) -> float32[n]."""
    for i in range(h.shape[0]):
        out[i] = half_to_f32(h[i])


# ---------------------------------------------------------------- hash index


@numba.njit(cache=True, inline="always")
def _home(key: np.int64, cap: np.int64) -> np.int64:
    return slot_of(mix64(np.uint64(key) ^ _INDEX_SALT), cap)


@numba.njit(cache=True, inline="always")
def _find_from(s: np.ndarray, key: np.int64, p: np.int64) -> np.int64:
    """Slot of ``key`` in slot array ``s`` (non-empty), or -1, probing from slot ``p`` (the
    key's home slot, computed ahead by callers that prefetch it)."""
    cap = s.shape[0] >> 1
    while True:
        r = s[2 * p + 1]
        if r == EMPTY:
            return np.int64(-1)
        if r > 0 and s[2 * p] == key:
            return p
        p += 1
        if p == cap:
            p = 0


@numba.njit(cache=True, inline="always")
def _find(s: np.ndarray, key: np.int64) -> np.int64:
    """Slot of ``key`` in slot array ``s``, or -1."""
    cap = s.shape[0] >> 1
    if cap == 0:
        return np.int64(-1)
    return _find_from(s, key, _home(key, cap))


@numba.njit(cache=True, inline="always")
def _lookup(sn: np.ndarray, so: np.ndarray, key: np.int64) -> np.int64:
    """Row of ``key`` or -1."""
    p = _find(sn, key)
    if p >= 0:
        return sn[2 * p + 1] - 1
    if so.shape[0] > 0:
        p = _find(so, key)
        if p >= 0:
            return so[2 * p + 1] - 1
    return np.int64(-1)


@numba.njit(cache=True, inline="always")
def _insert_new(sn: np.ndarray, key: np.int64, row: np.int64) -> None:
    """Insert a key known to be absent into the new slot array (which has no tombstones)."""
    cap = sn.shape[0] >> 1
    p = _home(key, cap)
    while sn[2 * p + 1] != EMPTY:
        p += 1
        if p == cap:
            p = 0
    sn[2 * p] = key
    sn[2 * p + 1] = row + 1


@numba.njit(cache=True, inline="always")
def _delete_at(sn: np.ndarray, i: np.int64) -> None:
    """Backward-shift deletion of slot ``i``: pull later members of the probe run back so no
    lookup ever has to skip a hole, and no tombstones build up."""
    cap = sn.shape[0] >> 1
    j = i
    while True:
        j += 1
        if j == cap:
            j = 0
        if sn[2 * j + 1] == EMPTY:
            break
        k = _home(sn[2 * j], cap)
        # The entry at j may move to i only if its home is not cyclically within (i, j].
        if i <= j:
            stays = i < k <= j
        else:
            stays = k > i or k <= j
        if not stays:
            sn[2 * i] = sn[2 * j]
            sn[2 * i + 1] = sn[2 * j + 1]
            i = j
    sn[2 * i + 1] = EMPTY


@numba.njit(cache=True, inline="always")
def _remove_key(sn: np.ndarray, so: np.ndarray, hdr: np.ndarray, key: np.int64) -> np.int64:
    p = _find(sn, key)
    if p >= 0:
        r = sn[2 * p + 1] - 1
        _delete_at(sn, p)
        hdr[H_N_NEW] -= 1
        return r
    if so.shape[0] > 0:
        p = _find(so, key)
        if p >= 0:
            r = so[2 * p + 1] - 1
            so[2 * p + 1] = TOMB
            hdr[H_N_OLD] -= 1
            return r
    return np.int64(-1)


@numba.njit(cache=True, nogil=True)
def migrate(sn: np.ndarray, so: np.ndarray, hdr: np.ndarray, budget: np.int64) -> bool:
    """Move up to ``budget`` old slots into the new array; True when the old one is empty."""
    cap_old = so.shape[0] >> 1
    pos = hdr[H_MIGRATE]
    end = min(cap_old, pos + budget)
    for s in range(pos, end):
        r = so[2 * s + 1]
        if r > 0:
            _insert_new(sn, so[2 * s], r - 1)
            so[2 * s + 1] = TOMB
            hdr[H_N_OLD] -= 1
            hdr[H_N_NEW] += 1
    hdr[H_MIGRATE] = end
    return end >= cap_old


# Ids are looked up in groups of GROUP: first every home slot of the group is computed and
# prefetched, then the group is probed. The misses of a group overlap (memory-level
# parallelism) instead of queueing one behind the other; on a 10M-row table this roughly
# triples lookup throughput.
GROUP = 16


@numba.njit(cache=True, inline="always")
def _prefetch_slot(base: np.int64, h: np.int64) -> None:
    # The home slot's line, and the next when the home slot sits in the last half of its
    # line: a probe run averages 2-3 slots at load 0.75, and a run that spills into the next
    # line would otherwise take a second, unprefetched miss.
    a = base + 16 * h
    prefetch(a)
    if (a & 63) >= 32:
        prefetch(a + 64)


@numba.njit(cache=True, inline="always")
def _lookup_group(ids: np.ndarray, b0: np.int64, m: np.int64, sn: np.ndarray, so: np.ndarray,
                  hs: np.ndarray, rs: np.ndarray) -> None:
    """Rows of ``ids[b0:b0+m]`` into ``rs[:m]`` (-1 when absent), prefetching first."""
    cap = sn.shape[0] >> 1
    base = sn.ctypes.data
    for g in range(m):
        h = _home(ids[b0 + g], cap)
        hs[g] = h
        _prefetch_slot(base, h)
    for g in range(m):
        key = ids[b0 + g]
        p = _find_from(sn, key, hs[g])
        if p >= 0:
            rs[g] = sn[2 * p + 1] - 1
        elif so.shape[0] > 0:
            q = _find(so, key)
            rs[g] = so[2 * q + 1] - 1 if q >= 0 else np.int64(-1)
        else:
            rs[g] = -1


@numba.njit(cache=True, nogil=True)
def lookup_rows(ids: np.ndarray, sn: np.ndarray, so: np.ndarray, out: np.ndarray) -> None:
    """Row of each id, -1 when absent."""
    hs = np.empty(GROUP, dtype=np.int64)
    rs = np.empty(GROUP, dtype=np.int64)
    n = ids.shape[0]
    for b0 in range(0, n, GROUP):
        m = min(GROUP, n - b0)
        _lookup_group(ids, b0, m, sn, so, hs, rs)
        for g in range(m):
            out[b0 + g] = rs[g]


# ---------------------------------------------------------------- row arena


@numba.njit(cache=True, inline="always")
def _meta(bt: np.ndarray, r: np.int64, shift: np.int64) -> np.int64:
    return bt[r >> shift, 2] + (r & ((np.int64(1) << shift) - 1)) * META_BYTES


@numba.njit(cache=True, inline="always")
def _vaddr(bt: np.ndarray, r: np.int64, shift: np.int64, row_vbytes: np.int64) -> np.int64:
    return bt[r >> shift, 0] + (r & ((np.int64(1) << shift) - 1)) * row_vbytes


@numba.njit(cache=True, inline="always")
def _saddr(bt: np.ndarray, r: np.int64, shift: np.int64, sw: np.int64) -> np.int64:
    return bt[r >> shift, 1] + (r & ((np.int64(1) << shift) - 1)) * (sw * 4)


@numba.njit(cache=True, inline="always")
def _prefetch_span(addr: np.int64, nbytes: np.int64) -> None:
    a = addr & ~np.int64(63)
    while a < addr + nbytes:
        prefetch(a)
        a += 64


@numba.njit(cache=True, inline="always")
def _read_values(bt: np.ndarray, r: np.int64, shift: np.int64, dim: np.int64, half: bool,
                 out: np.ndarray, i: np.int64) -> None:
    if half:
        ph = ptr_u16(_vaddr(bt, r, shift, dim * 2))
        for j in range(dim):
            out[i, j] = half_to_f32(ph[j])
    else:
        pf = ptr_f32(_vaddr(bt, r, shift, dim * 4))
        for j in range(dim):
            out[i, j] = pf[j]


@numba.njit(cache=True, inline="always")
def _alloc_row(hdr: np.ndarray, free: np.ndarray) -> np.int64:
    if hdr[H_FREE] > 0:
        hdr[H_FREE] -= 1
        return free[hdr[H_FREE]]
    r = hdr[H_NEXT_ROW]
    hdr[H_NEXT_ROW] = r + 1
    return r


@numba.njit(cache=True, inline="always")
def _write_new_row(bt: np.ndarray, r: np.int64, shift: np.int64, dim: np.int64, sw: np.int64,
                   half: bool, key: np.int64, w: np.ndarray, state0: np.ndarray,
                   step: np.int64, tnow: np.float32) -> None:
    if half:
        ph = ptr_u16(_vaddr(bt, r, shift, dim * 2))
        for j in range(dim):
            ph[j] = f32_to_half(w[j])
    else:
        pf = ptr_f32(_vaddr(bt, r, shift, dim * 4))
        for j in range(dim):
            pf[j] = w[j]
    ps = ptr_f32(_saddr(bt, r, shift, sw))
    for j in range(sw):
        ps[j] = state0[j]
    m = _meta(bt, r, shift)
    ptr_i64(m + M_KEY)[0] = key
    ptr_u32(m + M_COUNT)[0] = np.uint32(0)
    ptr_u32(m + M_STEP)[0] = np.uint32(step)
    ptr_f32(m + M_TIME)[0] = tnow
    ptr_u8(m + M_FLAGS)[0] = np.uint8(F_LIVE | F_DIRTY | F_NEW)


# ---------------------------------------------------------------- pull


# pull_eval runs a three-stage software pipeline over a ring of RING ids: hash and prefetch
# the home slot of id i, probe id i - DIST and prefetch its row, copy id i - 2*DIST. Every
# cache miss is thus in flight DIST ids ahead of its use.
DIST = 12
RING = 32
RMASK = RING - 1  # ring positions by mask: indices are never negative there


@numba.njit(cache=True, nogil=True)
def pull_eval(ids: np.ndarray, out: np.ndarray, sn: np.ndarray, so: np.ndarray, bt: np.ndarray,
              shift: np.int64, dim: np.int64, half: bool, seed: np.uint64,
              std: np.ndarray) -> None:
    """Read-only gather: stored rows, the initializer's value for absent ids."""
    tmp = np.empty(dim, dtype=np.float32)
    hs = np.empty(RING, dtype=np.int64)
    rs = np.empty(RING, dtype=np.int64)
    vb = dim * (2 if half else 4)
    n = ids.shape[0]
    cap = sn.shape[0] >> 1
    base = sn.ctypes.data
    migrating = so.shape[0] > 0
    for i in range(n + 2 * DIST):
        if i < n:
            h = _home(ids[i], cap)
            hs[i & RMASK] = h
            _prefetch_slot(base, h)
        j = i - DIST
        if 0 <= j < n:
            key = ids[j]
            p = _find_from(sn, key, hs[j & RMASK])
            r = sn[2 * p + 1] - 1 if p >= 0 else np.int64(-1)
            if r < 0 and migrating:
                q = _find(so, key)
                r = so[2 * q + 1] - 1 if q >= 0 else np.int64(-1)
            rs[j & RMASK] = r
            if r >= 0:
                _prefetch_span(_vaddr(bt, r, shift, vb), vb)
        k = i - 2 * DIST
        if 0 <= k < n:
            r = rs[k & RMASK]
            if r >= 0:
                _read_values(bt, r, shift, dim, half, out, k)
            else:
                normal_init(seed, ids[k], np.float32(1.0), tmp)
                tmp *= std
                for jj in range(dim):
                    out[k, jj] = half_to_f32(f32_to_half(tmp[jj])) if half else tmp[jj]


@numba.njit(cache=True, nogil=True)
def pull_train(ids: np.ndarray, out: np.ndarray, start: np.int64, room: np.int64,
               sn: np.ndarray, so: np.ndarray, hdr: np.ndarray, bt: np.ndarray,
               free: np.ndarray, shift: np.int64, dim: np.int64, sw: np.int64, half: bool,
               seed: np.uint64, std: np.ndarray, state0: np.ndarray, min_count: np.int64,
               sketch: np.ndarray, sketch_seed: np.uint64, prob: np.float64, step: np.int64,
               tnow: np.float32, seed_count: bool) -> np.int64:
    """Gather rows of ``ids[start:]``, counting unseen ids in the sketch and creating rows
    for admitted ones, at most ``room`` of them (the index and arena room the caller has).
    With ``seed_count`` a new row's count starts at its sketch estimate (its sightings so
    far) instead of 0, so LFU ranks it by everything seen of it.

    Returns the position where it stopped: ``ids.shape[0]`` when done, else the first id
    that was admitted but found no room — nothing was recorded for it, so the caller makes
    room and resumes there. Ids that are not admitted never need room."""
    created = np.int64(0)
    tmp = np.empty(dim, dtype=np.float32)
    hs = np.empty(RING, dtype=np.int64)
    rs = np.empty(RING, dtype=np.int64)
    vb = dim * (2 if half else 4)
    n = ids.shape[0]
    cap = sn.shape[0] >> 1
    base = sn.ctypes.data
    # The pipeline of pull_eval. Stage 2 (probe, and create on a miss) runs strictly in id
    # order, so a duplicate id finds the row an earlier occurrence created; stage 3 only
    # copies rows that already existed, which this kernel never modifies.
    for i in range(start, n + 2 * DIST):
        if i < n:
            h = _home(ids[i], cap)
            hs[i & RMASK] = h
            _prefetch_slot(base, h)
        j = i - DIST
        if start <= j < n:
            key = ids[j]
            p = _find_from(sn, key, hs[j & RMASK])
            r = sn[2 * p + 1] - 1 if p >= 0 else np.int64(-1)
            if r < 0 and so.shape[0] > 0:
                q = _find(so, key)
                r = so[2 * q + 1] - 1 if q >= 0 else np.int64(-1)
            rs[j & RMASK] = r
            if r >= 0:
                _prefetch_span(_vaddr(bt, r, shift, vb), vb)
            else:
                admit = True
                if min_count > 1:
                    # Peek first: record the occurrence only once it is certain to be handled.
                    admit = sketch_estimate(sketch, sketch_seed, key) + 1 >= min_count
                if admit and prob < 1.0:
                    hh = mix64(mix64(np.uint64(key) ^ seed ^ _ADMIT_SALT) + np.uint64(step))
                    admit = uniform01(hh) <= prob
                if admit and created == room:
                    # Finish the copies still in flight, then hand back for more room.
                    for k in range(max(start, j - DIST), j):
                        if rs[k & RMASK] >= 0:
                            _read_values(bt, rs[k & RMASK], shift, dim, half, out, k)
                    return j
                est = np.int64(0)
                if min_count > 1 or seed_count:
                    est = sketch_add(sketch, sketch_seed, key)
                normal_init(seed, key, np.float32(1.0), tmp)
                tmp *= std
                if half:
                    for jj in range(dim):
                        tmp[jj] = half_to_f32(f32_to_half(tmp[jj]))
                if admit:
                    r = _alloc_row(hdr, free)
                    _insert_new(sn, key, r)
                    hdr[H_N_NEW] += 1
                    _write_new_row(bt, r, shift, dim, sw, half, key, tmp, state0, step, tnow)
                    if seed_count:
                        ptr_u32(_meta(bt, r, shift) + M_COUNT)[0] = np.uint32(est)
                    created += 1
                for jj in range(dim):
                    out[j, jj] = tmp[jj]
        k = i - 2 * DIST
        if start <= k < n and rs[k & RMASK] >= 0:
            _read_values(bt, rs[k & RMASK], shift, dim, half, out, k)
    return n


# ---------------------------------------------------------------- push


@numba.njit(cache=True, inline="always")
def _prefetch_row(bt: np.ndarray, r: np.int64, shift: np.int64, dim: np.int64, sw: np.int64,
                  half: bool) -> None:
    """Prefetch the lines an optimizer step on row ``r`` touches: values, state, meta."""
    vb = dim * (2 if half else 4)
    _prefetch_span(_vaddr(bt, r, shift, vb), vb)
    _prefetch_span(_saddr(bt, r, shift, sw), 4 * sw)
    prefetch(_meta(bt, r, shift))


@numba.njit(cache=True, inline="always")
def _update_row(bt: np.ndarray, r: np.int64, shift: np.int64, dim: np.int64, sw: np.int64,
                half: bool, kind: np.int64, w: np.ndarray, g: np.ndarray, hp: np.ndarray,
                occ: np.int64, step: np.int64, tnow: np.float32) -> None:
    """One optimizer step on row ``r`` with gradient ``g`` (``w``: dim floats of scratch);
    adds ``occ`` to its count, stamps ``step``/``tnow`` and marks it dirty."""
    # Both typed views of the row's address; only the one matching the storage is used.
    ph = ptr_u16(_vaddr(bt, r, shift, dim * 2))
    pf = ptr_f32(_vaddr(bt, r, shift, dim * 4))
    if half:
        for jj in range(dim):
            w[jj] = half_to_f32(ph[jj])
    else:
        for jj in range(dim):
            w[jj] = pf[jj]
    st = carray(ptr_f32(_saddr(bt, r, shift, sw)), (sw,))
    update_row(kind, w, st, g, hp)
    if half:
        for jj in range(dim):
            ph[jj] = f32_to_half(w[jj])
    else:
        for jj in range(dim):
            pf[jj] = w[jj]
    mt = _meta(bt, r, shift)
    pc = ptr_u32(mt + M_COUNT)
    c = np.int64(pc[0]) + occ
    pc[0] = np.uint32(min(c, _U32_MAX))
    ptr_u32(mt + M_STEP)[0] = np.uint32(step)
    ptr_f32(mt + M_TIME)[0] = tnow
    pf8 = ptr_u8(mt + M_FLAGS)
    pf8[0] = np.uint8(pf8[0] | F_DIRTY)


# A float32 is NaN or infinite iff its exponent bits are all ones; adding one exponent step
# then carries into its sign bit. Two floats per uint64 word, OR-ed over a block: vectorises.
_EXP2 = np.uint64(0x7F8000007F800000)
_EXP2_STEP = np.uint64(0x0080000000800000)
_SIGN2 = np.uint64(0x8000000080000000)


@numba.njit(cache=True, nogil=True)
def all_finite(x: np.ndarray) -> bool:
    """True when no element of the C-contiguous float32 array ``x`` is NaN or infinite: one
    pass, no temporary (``np.isfinite(x).all()`` allocates a boolean array of x's size)."""
    flat = x.reshape(-1)
    n = flat.shape[0]
    if n & 1:
        if not np.isfinite(flat[n - 1]):
            return False
        n -= 1
    words = flat[:n].view(np.uint64)
    for b0 in range(0, words.shape[0], 2048):
        blk = words[b0:b0 + 2048]
        bad = np.uint64(0)
        # An unsigned index: numba then emits no negative-index wraparound, which would
        # keep the loop from vectorising (3x slower than numpy's isfinite instead of 2x faster).
        for i in range(blk.shape[0]):
            bad |= (blk[np.uint64(i)] & _EXP2) + _EXP2_STEP
        if bad & _SIGN2:
            return False
    return True


@numba.njit(cache=True, inline="always")
def _step_rows(rows: np.ndarray, u: np.int64, g: np.ndarray, occ: np.ndarray, bt: np.ndarray,
               shift: np.int64, dim: np.int64, sw: np.int64, half: bool, kind: np.int64,
               hp: np.ndarray, step: np.int64, tnow: np.float32) -> np.int64:
    """Optimizer step on ``rows[k]`` with gradient ``g[k]`` for k < u, adding ``occ[k]`` to
    its count (1 when ``occ`` is empty); rows < 0 are skipped. Each row's lines are
    prefetched DIST rows ahead. Returns the rows updated."""
    w = np.empty(dim, dtype=np.float32)
    done = np.int64(0)
    for kk in range(u + DIST):
        if kk < u and rows[kk] >= 0:
            _prefetch_row(bt, rows[kk], shift, dim, sw, half)
        k = kk - DIST
        if k >= 0 and rows[k] >= 0:
            c = occ[k] if occ.shape[0] > 0 else np.int64(1)
            _update_row(bt, rows[k], shift, dim, sw, half, kind, w, g[k], hp, c, step, tnow)
            done += 1
    return done


@numba.njit(cache=True, nogil=True)
def push_unique(ids: np.ndarray, grads: np.ndarray, sn: np.ndarray, so: np.ndarray,
                bt: np.ndarray, shift: np.int64, dim: np.int64, sw: np.int64, half: bool,
                kind: np.int64, hp: np.ndarray, step: np.int64, tnow: np.float32) -> np.int64:
    """``push`` for ids known to be distinct: no dedup table, no gradient copy — each id's
    row is stepped with its own gradient row. Same result as ``push`` on distinct ids (rows
    updated in the same order with the same gradients). Returns the rows updated."""
    n = ids.shape[0]
    rows = np.empty(n, dtype=np.int64)
    lookup_rows(ids, sn, so, rows)
    return _step_rows(rows, n, grads, np.empty(0, dtype=np.int64), bt, shift, dim, sw, half,
                      kind, hp, step, tnow)


@numba.njit(cache=True, nogil=True)
def push(ids: np.ndarray, grads: np.ndarray, sn: np.ndarray, so: np.ndarray, bt: np.ndarray,
         shift: np.int64, dim: np.int64, sw: np.int64, half: bool, kind: np.int64,
         hp: np.ndarray, step: np.int64, tnow: np.float32) -> np.int64:
    """Sum gradients of duplicate ids, then apply the optimizer once per existing row.

    Ids without a row are skipped. Returns the number of distinct rows updated."""
    n = ids.shape[0]
    m = np.int64(16)
    while m < 2 * n:
        m <<= 1
    mask = m - 1
    # Batch-local dedup table: (row, index into urows) pairs side by side, one line per probe.
    dd = np.full(2 * m, np.int64(-1))
    urows = np.empty(n, dtype=np.int64)
    occ = np.empty(n, dtype=np.int64)
    acc = np.empty((n, dim), dtype=np.float32)
    hs = np.empty(RING, dtype=np.int64)
    cap = sn.shape[0] >> 1
    base = sn.ctypes.data
    migrating = so.shape[0] > 0
    u = np.int64(0)
    # Stage 1, pipelined like pull_eval: hash + prefetch slot of id i, probe id i - DIST and
    # fold its gradient into its row's accumulator.
    for i in range(n + DIST):
        if i < n:
            h = _home(ids[i], cap)
            hs[i & RMASK] = h
            _prefetch_slot(base, h)
        j = i - DIST
        if j < 0:
            continue
        key = ids[j]
        p = _find_from(sn, key, hs[j & RMASK])
        r = sn[2 * p + 1] - 1 if p >= 0 else np.int64(-1)
        if r < 0 and migrating:
            q = _find(so, key)
            r = so[2 * q + 1] - 1 if q >= 0 else np.int64(-1)
        if r < 0:
            continue
        p = np.int64(mix64(np.uint64(r)) & np.uint64(mask))
        while dd[2 * p] != -1 and dd[2 * p] != r:
            p = (p + 1) & mask
        if dd[2 * p] == -1:
            dd[2 * p] = r
            dd[2 * p + 1] = u
            urows[u] = r
            occ[u] = 1
            for jj in range(dim):
                acc[u, jj] = grads[j, jj]
            u += 1
        else:
            k = dd[2 * p + 1]
            occ[k] += 1
            for jj in range(dim):
                acc[k, jj] += grads[j, jj]
    # Stage 2: optimizer step per distinct row, its lines prefetched DIST rows ahead.
    return _step_rows(urows, u, acc, occ, bt, shift, dim, sw, half, kind, hp, step, tnow)


# ---------------------------------------------------------------- eviction


@numba.njit(cache=True, nogil=True)
def mark_ttl(hdr: np.ndarray, bt: np.ndarray, shift: np.int64, step: np.int64,
             ttl_steps: np.int64, tnow: np.float32, ttl_seconds: np.float64) -> np.int64:
    """Flag rows idle for more than ``ttl_steps`` steps or ``ttl_seconds`` (<= 0: off)."""
    marked = np.int64(0)
    for r in range(hdr[H_NEXT_ROW]):
        mt = _meta(bt, r, shift)
        pf8 = ptr_u8(mt + M_FLAGS)
        fl = pf8[0]
        if (fl & F_LIVE) == 0 or (fl & F_VICTIM) != 0:
            continue
        stale = False
        if ttl_steps > 0:
            last = np.int64(ptr_u32(mt + M_STEP)[0])
            stale = step - last > ttl_steps
        if not stale and ttl_seconds > 0.0:
            stale = np.float64(tnow) - np.float64(ptr_f32(mt + M_TIME)[0]) > ttl_seconds
        if stale:
            pf8[0] = np.uint8(fl | F_VICTIM)
            marked += 1
    return marked


@numba.njit(cache=True, nogil=True)
def mark_capacity(hdr: np.ndarray, bt: np.ndarray, shift: np.int64, k: np.int64, lfu: bool,
                  step: np.int64) -> np.int64:
    """Flag ``k`` live rows with the lowest score: last-update step (LRU) or pushed count (LFU).

    Rows created or updated at the current step score highest, so a row pulled in this step
    survives until its gradient arrives unless nothing else is left. Selection is by a
    65,536-bucket histogram of the score: exact while the score range fits the buckets
    (always for LFU counts below 65,536, and for LRU over fewer than 65,536 distinct steps),
    otherwise exact up to one bucket's width, ties broken by row order."""
    if k <= 0:
        return np.int64(0)
    nrows = hdr[H_NEXT_ROW]
    protected = _U32_MAX + 1
    lo = np.int64(1) << 62
    hi = np.int64(-1)
    for r in range(nrows):
        s = _score(bt, r, shift, lfu, step)
        if 0 <= s < protected:
            lo = min(lo, s)
            hi = max(hi, s)
    nb = np.int64(65536)
    width = (hi - lo) // nb + 1 if hi >= 0 else np.int64(1)
    # Bucket nb holds the protected rows (stamped at the current step): they go last.
    hist = np.zeros(nb + 1, dtype=np.int64)
    for r in range(nrows):
        s = _score(bt, r, shift, lfu, step)
        if s >= 0:
            hist[nb if s == protected else (s - lo) // width] += 1
    cum = np.int64(0)
    tb = np.int64(0)
    while tb <= nb and cum + hist[tb] < k:
        cum += hist[tb]
        tb += 1
    quota = k - cum
    # The cut: the lowest score of the boundary bucket (exact when a bucket is one score wide).
    # Unchanged when only protected rows were left to cut.
    if tb < nb:
        hdr[H_FLOOR] = lo + tb * width
    marked = np.int64(0)
    for r in range(nrows):
        s = _score(bt, r, shift, lfu, step)
        if s < 0:
            continue
        b = nb if s == protected else (s - lo) // width
        if b < tb or (b == tb and quota > 0):
            if b == tb:
                quota -= 1
            pf8 = ptr_u8(_meta(bt, r, shift) + M_FLAGS)
            pf8[0] = np.uint8(pf8[0] | F_VICTIM)
            marked += 1
    return marked


@numba.njit(cache=True, nogil=True)
def touch(ids: np.ndarray, sn: np.ndarray, so: np.ndarray, bt: np.ndarray, shift: np.int64,
          step: np.int64, tnow: np.float32) -> None:
    """Stamp the rows of ``ids`` (those that have one) with ``step`` and ``tnow``, so a
    capacity eviction in the middle of a training pull spares the rows it already read."""
    for i in range(ids.shape[0]):
        r = _lookup(sn, so, ids[i])
        if r >= 0:
            mt = _meta(bt, r, shift)
            ptr_u32(mt + M_STEP)[0] = np.uint32(step)
            ptr_f32(mt + M_TIME)[0] = tnow


@numba.njit(cache=True, inline="always")
def _score(bt: np.ndarray, r: np.int64, shift: np.int64, lfu: bool, step: np.int64) -> np.int64:
    """Eviction score of row ``r`` (lower goes first), -1 if not a candidate."""
    mt = _meta(bt, r, shift)
    fl = ptr_u8(mt + M_FLAGS)[0]
    if (fl & F_LIVE) == 0 or (fl & F_VICTIM) != 0:
        return np.int64(-1)
    last = np.int64(ptr_u32(mt + M_STEP)[0])
    if last >= step > 0:
        return _U32_MAX + 1
    if lfu:
        return np.int64(ptr_u32(mt + M_COUNT)[0])
    return last


@numba.njit(cache=True, nogil=True)
def remove_marked(sn: np.ndarray, so: np.ndarray, hdr: np.ndarray, bt: np.ndarray,
                  shift: np.int64, free: np.ndarray, out_keys: np.ndarray,
                  out_new: np.ndarray) -> np.int64:
    """Delete every flagged row from the index and free it; write its key to ``out_keys``
    and whether it was created since the last delta export to ``out_new`` (room for all
    flagged rows reserved by the caller, as is room on the free stack)."""
    j = np.int64(0)
    for r in range(hdr[H_NEXT_ROW]):
        mt = _meta(bt, r, shift)
        pf8 = ptr_u8(mt + M_FLAGS)
        fl = pf8[0]
        if (fl & F_VICTIM) == 0:
            continue
        key = ptr_i64(mt + M_KEY)[0]
        _remove_key(sn, so, hdr, key)
        pf8[0] = np.uint8(0)
        free[hdr[H_FREE]] = r
        hdr[H_FREE] += 1
        out_keys[j] = key
        out_new[j] = (fl & F_NEW) != 0
        j += 1
    return j


# ---------------------------------------------------------------- export / import


@numba.njit(cache=True, nogil=True)
def collect_rows(hdr: np.ndarray, bt: np.ndarray, shift: np.int64, need: np.uint8,
                 clear: np.uint8, out: np.ndarray) -> np.int64:
    """Rows whose flags contain all bits of ``need`` (live rows only), clearing ``clear``.
    ``out`` must have room for all of them; returns how many were written."""
    j = np.int64(0)
    for r in range(hdr[H_NEXT_ROW]):
        pf8 = ptr_u8(_meta(bt, r, shift) + M_FLAGS)
        fl = pf8[0]
        if (fl & F_LIVE) != 0 and (fl & need) == need:
            if j < out.shape[0]:
                out[j] = r
            j += 1
            pf8[0] = np.uint8(fl & ~clear)
    return j


@numba.njit(cache=True, nogil=True)
def count_flag(hdr: np.ndarray, bt: np.ndarray, shift: np.int64, need: np.uint8) -> np.int64:
    c = np.int64(0)
    for r in range(hdr[H_NEXT_ROW]):
        fl = ptr_u8(_meta(bt, r, shift) + M_FLAGS)[0]
        if (fl & F_LIVE) != 0 and (fl & need) == need:
            c += 1
    return c


@numba.njit(cache=True, nogil=True)
def gather_rows(rows: np.ndarray, bt: np.ndarray, shift: np.int64, row_vbytes: np.int64,
                sw: np.int64, vals: np.ndarray, state: np.ndarray, meta: np.ndarray) -> None:
    """Copy rows out: raw value bytes ``vals[n, row_vbytes]``, state bytes
    ``state[n, 4*sw]`` and meta records ``meta[n, META_BYTES]`` (all uint8)."""
    for i in range(rows.shape[0]):
        r = rows[i]
        pv = ptr_u8(_vaddr(bt, r, shift, row_vbytes))
        for j in range(row_vbytes):
            vals[i, j] = pv[j]
        ps = ptr_u8(_saddr(bt, r, shift, sw))
        for j in range(4 * sw):
            state[i, j] = ps[j]
        pm = ptr_u8(_meta(bt, r, shift))
        for j in range(META_BYTES):
            meta[i, j] = pm[j]


@numba.njit(cache=True, nogil=True)
def upsert_rows(sn: np.ndarray, so: np.ndarray, hdr: np.ndarray, bt: np.ndarray,
                free: np.ndarray, shift: np.int64, row_vbytes: np.int64, sw: np.int64,
                vals: np.ndarray, state: np.ndarray, meta: np.ndarray,
                flags: np.uint8, created_flags: np.uint8) -> np.int64:
    """Write rows given as raw bytes (layout of ``gather_rows``; key taken from ``meta``),
    creating those that are absent. Flags become ``flags`` (plus ``created_flags`` for
    created rows; an existing row keeps its F_NEW). The caller reserved room for every row.
    Returns rows created."""
    created = np.int64(0)
    for i in range(meta.shape[0]):
        key = np.int64(0)
        for b in range(8):
            key |= np.int64(meta[i, b]) << (8 * b)
        r = _lookup(sn, so, key)
        fl = flags
        if r < 0:
            r = _alloc_row(hdr, free)
            _insert_new(sn, key, r)
            hdr[H_N_NEW] += 1
            created += 1
            fl = np.uint8(fl | created_flags)
        else:
            fl = np.uint8(fl | (ptr_u8(_meta(bt, r, shift) + M_FLAGS)[0] & F_NEW))
        pv = ptr_u8(_vaddr(bt, r, shift, row_vbytes))
        for j in range(row_vbytes):
            pv[j] = vals[i, j]
        ps = ptr_u8(_saddr(bt, r, shift, sw))
        for j in range(4 * sw):
            ps[j] = state[i, j]
        pm = ptr_u8(_meta(bt, r, shift))
        for j in range(M_FLAGS):
            pm[j] = meta[i, j]
        pm[M_FLAGS] = fl
    return created


@numba.njit(cache=True, nogil=True)
def delete_keys(keys: np.ndarray, sn: np.ndarray, so: np.ndarray, hdr: np.ndarray,
                bt: np.ndarray, shift: np.int64, free: np.ndarray,
                out_removed: np.ndarray) -> np.int64:
    """Remove the rows of ``keys`` that exist (room on the free stack reserved by the
    caller). ``out_removed[i]``: 0 absent, 1 removed, 2 removed and created since the last
    delta export. Returns rows removed."""
    removed = np.int64(0)
    for i in range(keys.shape[0]):
        r = _remove_key(sn, so, hdr, keys[i])
        out_removed[i] = 0
        if r >= 0:
            pf8 = ptr_u8(_meta(bt, r, shift) + M_FLAGS)
            out_removed[i] = 2 if (pf8[0] & F_NEW) != 0 else 1
            pf8[0] = np.uint8(0)
            free[hdr[H_FREE]] = r
            hdr[H_FREE] += 1
            removed += 1
    return removed
