"""The PyTorch bridge: pooled embeddings from dynamic tables, gradients back to the tables.

:class:`SparseEmbedding` is an ``nn.Module`` whose forward takes a
:class:`~plinth.sparse.jagged.KeyedJaggedTensor` and returns a float32 tensor
``(B, F, dim)``: one pooled vector per feature key (field), in key order. Per table:

1. gather the ids of the keys that use it, deduplicate them (:func:`unique_inverse`, a
   compiled hash-based dedup: O(n), no sort),
2. ``table.pull(unique_ids, train=self.training)`` -> ``(U, dim)`` rows, wrapped as a leaf
   tensor with ``requires_grad`` when training,
3. pool per key: single-valued keys are a plain gather (one ``index_select`` for all of a
   table's single-valued keys), multi-valued keys a gather and an ``index_add`` per
   sample (sum — weighted by the KJT's per-id weights when it has them — or mean) over the local
   index — so autograd sees a small dense ``(U, dim)`` parameter instead of the table.

After ``loss.backward()`` call :meth:`SparseEmbedding.apply_sparse_gradients`: it pushes each
leaf's gradient to its table (``table.push(unique_ids, grad)``), where the table's own
optimizer (SGD/Adagrad/FTRL/Adam) updates the rows; a local
:class:`~plinth.sparse.table.EmbeddingTable` gets ``unique=True``, so it skips deduplicating
again. The module depends only on the tables' batch-shaped ``pull``/``push``, so a
parameter-server client with those two methods works unchanged (:class:`TableLike`).

Contract: at most one training forward per :meth:`apply_sparse_gradients` (the pending
gradients of a second forward would be pushed together, which is fine for gradient
accumulation); eval forwards (``module.eval()`` or ``torch.no_grad()``) record nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numba
import numpy as np
import torch
from torch import nn

from plinth.sparse.jagged import KeyedJaggedTensor
from plinth.sparse.table import EmbeddingTable

__all__ = ["FeatureSpec", "SparseEmbedding", "TableLike", "unique_inverse"]


@numba.njit(cache=True, nogil=True)
def _dedup_kernel(ids: np.ndarray, uniq: np.ndarray, inverse: np.ndarray) -> int:
    # Open addressing over a power-of-two table at load <= 0.5; slot -> index into uniq.
    n = ids.shape[0]
    cap = 16
    while cap < 2 * n:
        cap *= 2
    mask = cap - 1
    slots = np.full(cap, -1, dtype=np.int64)
    u = 0
    for i in range(n):
        key = ids[i]
        z = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
        h = np.int64((z ^ (z >> np.uint64(29))) & np.uint64(mask))
        while True:
            j = slots[h]
            if j < 0:
                slots[h] = u
                uniq[u] = key
                inverse[i] = u
                u += 1
                break
            if uniq[j] == key:
                inverse[i] = j
                break
            h = (h + 1) & mask
    return u


def unique_inverse(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniq, inverse)`` with ``uniq[inverse] == ids``; uniq in first-seen order.

    A hash-based O(n) replacement for ``np.unique(ids, return_inverse=True)`` (which sorts).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    uniq = np.empty(ids.shape[0], dtype=np.int64)
    inverse = np.empty(ids.shape[0], dtype=np.int64)
    u = _dedup_kernel(ids, uniq, inverse)
    return uniq[:u], inverse


@runtime_checkable
class TableLike(Protocol):
    """What the module needs from a table (local :class:`EmbeddingTable` or a PS client)."""

    def pull(self, ids: np.ndarray, train: bool = True) -> np.ndarray: ...

    def push(self, ids: np.ndarray, grads: np.ndarray) -> None: ...


@dataclass(frozen=True)
class FeatureSpec:
    """One feature key read by the module: which table, how to pool (``sum``/``mean``)."""

    key: str
    table: str
    pooling: str = "sum"


@dataclass
class _Pending:
    table: str
    ids: np.ndarray
    weight: torch.Tensor


class SparseEmbedding(nn.Module):
    """Pooled embeddings ``(B, F, dim)`` for ``features`` from dynamic ``tables``.

    ``tables``: name -> table (all of dimension ``dim``); ``features``: the keys to read,
    in output order. Keys missing from a batch raise ``KeyError`` naming them.
    """

    def __init__(
        self, tables: Mapping[str, TableLike], features: Sequence[FeatureSpec], dim: int
    ) -> None:
        super().__init__()
        if not features:
            raise ValueError("SparseEmbedding needs at least one feature")
        for f in features:
            if f.table not in tables:
                raise ValueError(
                    f"feature {f.key!r} uses table {f.table!r}, which is not among {sorted(tables)}"
                )
            if f.pooling not in ("sum", "mean"):
                raise ValueError(f"feature {f.key!r}: pooling must be 'sum' or 'mean'")
        self.tables = dict(tables)
        self.features = list(features)
        self.dim = int(dim)
        # Table -> indices (into self.features) of its keys, in feature order.
        self._groups: dict[str, list[int]] = {}
        for i, f in enumerate(self.features):
            self._groups.setdefault(f.table, []).append(i)
        self._pending: list[_Pending] = []

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.features]

    def unique_ids(self, kjt: KeyedJaggedTensor) -> dict[str, np.ndarray]:
        """Per table, the distinct ids that :meth:`forward` of ``kjt`` will pull, in the
        same order — so a parameter-server client can prefetch exactly that pull."""
        b = kjt.stride()
        off = kjt.offsets()
        index = {k: i for i, k in enumerate(kjt.keys())}
        values = kjt.values()
        out = {}
        for table_name, members in self._groups.items():
            ks = [index[self.features[i].key] for i in members]
            parts = [values[int(off[k * b]):int(off[(k + 1) * b])] for k in ks]
            out[table_name] = unique_inverse(parts[0] if len(parts) == 1
                                             else np.concatenate(parts))[0]
        return out

    def forward(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
        b = kjt.stride()
        off_all = kjt.offsets()
        index = {k: i for i, k in enumerate(kjt.keys())}
        missing = [f.key for f in self.features if f.key not in index]
        if missing:
            raise KeyError(f"batch lacks feature keys {missing}; it has {kjt.keys()}")
        values = kjt.values()
        weights = kjt.weights_or_none()
        lengths = kjt.lengths()
        record = self.training and torch.is_grad_enabled()
        blocks: list[torch.Tensor] = []  # per table: (n_keys, B, dim)
        order: list[int] = []  # feature index of each block row, in block order
        for table_name, members in self._groups.items():
            spans = []
            for i in members:
                k = index[self.features[i].key]
                spans.append((int(off_all[k * b]), int(off_all[(k + 1) * b]), k))
            if len(spans) == 1:
                ids = values[spans[0][0] : spans[0][1]]
            else:
                ids = np.concatenate([values[s:e] for s, e, _ in spans])
            uniq, inverse = unique_inverse(ids)
            rows = self.tables[table_name].pull(uniq, train=record)
            rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(len(uniq), self.dim)
            weight = torch.from_numpy(rows)
            if record:
                weight.requires_grad_(True)
                self._pending.append(_Pending(table_name, uniq, weight))
            local = torch.from_numpy(inverse.reshape(-1).astype(np.int64, copy=False))
            # Single-valued keys (every slot exactly one id) need no pooling: one gather for
            # all of them gives (n_single, B, dim). Multi-valued keys are pooled by
            # index_add, whose backward is a gather (F.embedding_bag's dense backward is
            # several times slower on CPU).
            pos = 0
            single_pos: list[int] = []
            single_members: list[int] = []
            multi: list[torch.Tensor] = []
            multi_members: list[int] = []
            for (s, e, k), i in zip(spans, members, strict=True):
                n = e - s
                if n == b and bool(np.all(lengths[k * b : (k + 1) * b] == 1)):
                    single_pos.append(pos)
                    single_members.append(i)
                else:
                    seg_lengths = lengths[k * b : (k + 1) * b]
                    multi.append(self._pool(weight, local[pos : pos + n], seg_lengths,
                                            None if weights is None else weights[s:e],
                                            self.features[i].pooling))
                    multi_members.append(i)
                pos += n
            if single_members:
                if pos == len(single_members) * b:  # all single-valued: contiguous already
                    idx = local
                else:
                    idx = torch.cat([local[p : p + b] for p in single_pos])
                blocks.append(weight.index_select(0, idx).view(len(single_members), b, self.dim))
                order.extend(single_members)
            if multi:
                blocks.append(torch.stack(multi))
                order.extend(multi_members)
        allf = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        if order != list(range(len(self.features))):
            perm = np.empty(len(order), dtype=np.int64)
            perm[np.asarray(order)] = np.arange(len(order))
            allf = allf.index_select(0, torch.from_numpy(perm))
        return allf.transpose(0, 1)  # (B, F, dim); a view, no copy

    @staticmethod
    def _pool(
        weight: torch.Tensor,
        local: torch.Tensor,
        lengths: np.ndarray,
        per_id: np.ndarray | None,
        pooling: str,
    ) -> torch.Tensor:
        """Pool one multi-valued key: (B, dim) from its ids' local rows."""
        b = lengths.shape[0]
        seg = torch.from_numpy(np.repeat(np.arange(b, dtype=np.int64), lengths))
        rows = weight.index_select(0, local)
        scale = None
        if pooling == "mean":
            inv = 1.0 / np.maximum(lengths, 1).astype(np.float32)
            scale = np.repeat(inv, lengths)  # per-id weights apply to sum pooling only
        elif per_id is not None:
            scale = per_id
        if scale is not None:
            rows = rows * torch.from_numpy(np.ascontiguousarray(scale, dtype=np.float32)).unsqueeze(1)
        return torch.zeros(b, weight.shape[1], dtype=weight.dtype).index_add(0, seg, rows)

    def apply_sparse_gradients(self) -> int:
        """Push the gradients of the last training forward(s) to the tables; return ids pushed.

        Call after ``loss.backward()``. Leaves without a gradient (not part of the loss)
        are skipped. Clears the pending list either way.
        """
        pushed = 0
        pending, self._pending = self._pending, []
        for p in pending:
            if p.weight.grad is None:
                continue
            table = self.tables[p.table]
            # A local table (not a subclass's own push) or a table that says it takes the
            # flag (the parameter-server client, issue 11).
            if type(table).push is EmbeddingTable.push or getattr(table, "accepts_unique", False):
                # p.ids came out of unique_inverse: the table need not deduplicate again.
                table.push(p.ids, p.weight.grad.numpy(), unique=True)
            else:
                table.push(p.ids, p.weight.grad.numpy())
            pushed += len(p.ids)
        return pushed

    def discard_pending(self) -> None:
        """Forget recorded gradients (e.g. after a failed step)."""
        self._pending = []
