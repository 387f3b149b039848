"""Dynamic embedding tables and the sparse side of a batch; usable on its own.

``from plinth.sparse import EmbeddingTable, TableConfig`` in a notebook or a
script. Modules: ``config`` (table, optimizer, admission and eviction configs),
``table`` (the numba hash table with its optimizers), ``jagged`` (the
KeyedJaggedTensor-style batch), ``hashing`` (64-bit feature ids with a field
salt), ``module`` (the PyTorch bridge). Names are imported on first use, so that
``import plinth.sparse`` costs neither numba's nor torch's start-up until needed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Admission": "config",
    "Eviction": "config",
    "EvictionPolicy": "config",
    "OptimizerConfig": "config",
    "OptimizerKind": "config",
    "StorageDType": "config",
    "TableConfig": "config",
    "EmbeddingTable": "table",
    "TableInputError": "table",
    "Batch": "jagged",
    "BatchError": "jagged",
    "JaggedTensor": "jagged",
    "KeyedJaggedTensor": "jagged",
    "hash_ints": "hashing",
    "hash_strings": "hashing",
    "hash_values": "hashing",
    "FeatureSpec": "module",
    "SparseEmbedding": "module",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'plinth.sparse' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"plinth.sparse.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
