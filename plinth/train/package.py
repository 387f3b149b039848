"""Model packages and delta exports (DESIGN.md, "Serving"), and loading them for inference.

A package is a directory, written to a temporary sibling and renamed into place::

    model/
      model.json         format, architecture (model, embedding_dim, hidden, ...), feature
                         schema, the learned numeric transforms (``normalizer``, see
                         plinth.data.normalize), which table each field reads, table
                         configs and row counts, metadata (step, samples seen, test
                         metrics and calibration, base rate, versions, time)
      dense.pt           the dense weights: ``model.state_dict()`` (tensors only)
      tables/<name>.npz  admitted rows: ``ids`` int64 (n,), ``values`` (n, dim)

A delta holds only what changed since the previous delta (or since the trainer started or
resumed)::

    deltas/delta-000003/
      delta.json         seq, step, time
      dense.pt           the dense weights at that step (small; always whole)
      tables/<name>.npz  ``ids``/``values`` of rows created or updated, ``evicted_ids``

Ids that are not in a table read as the table's initializer (a pure function of the table
seed and the id, see :class:`plinth.sparse.table.EmbeddingTable`), exactly as in
training, so a package predicts what the trainer predicted. Optimizer state is not
packaged: serving never updates rows.

``ModelPackage.load(dir)`` rebuilds the model; ``predict_batch``, ``predict_table`` (an
Arrow table with the schema's columns), ``predict_columns`` (raw values by feature) and
``predict_records`` (a list of feature dicts) return click probabilities; ``apply_delta(dir)`` moves it forward.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from plinth.data.normalize import Normalizer
from plinth.data.schema import Schema
from plinth.sparse.config import TableConfig
from plinth.sparse.jagged import Batch
from plinth.sparse.module import FeatureSpec, SparseEmbedding
from plinth.sparse.optimizers import state_width
from plinth.sparse.table import EmbeddingTable
from plinth.train.models import CTRModel, build_model

if TYPE_CHECKING:
    from plinth.train.trainer import Trainer

__all__ = ["FORMAT", "ModelPackage", "PackageError", "export_delta", "export_package",
           "record_columns"]

FORMAT = "plinth.model/v1"


class PackageError(ValueError):
    """A package or delta is missing or malformed; the message says which file."""


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def _save_torch(path: Path, obj: Any) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished directory into place; an existing one is replaced."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def _architecture(trainer: Trainer) -> dict[str, Any]:
    c = trainer.cfg
    return {
        "model": c.model, "embedding_dim": c.embedding_dim, "hidden": list(c.hidden),
        "dropout": c.dropout, "cross_layers": c.cross_layers, "bottom": list(c.bottom),
        "n_dense": trainer.normalizer.width, "fused_linear": trainer.model.fused_linear,
    }


def _features(trainer: Trainer) -> dict[str, list[dict[str, str]]]:
    return {
        module: [{"key": f.key, "table": f.table, "pooling": f.pooling} for f in specs]
        for module, specs in trainer.features.items()
    }


def export_package(trainer: Trainer, out: Path, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``trainer``'s model as a package at ``out`` (replacing one there); return it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "tables").mkdir(parents=True)
    tables_meta = {}
    for name, table in trainer.tables.items():
        sd = table.state_dict()
        _save_npz(tmp / "tables" / f"{name}.npz", {"ids": sd["ids"], "values": sd["values"]})
        tables_meta[name] = {
            "config": table.config.to_dict(), "rows": len(table), "file": f"tables/{name}.npz"
        }
    _save_torch(tmp / "dense.pt", trainer.model.state_dict())
    clean_metrics = {
        k: v for k, v in (metrics or {}).items()
        if isinstance(v, int | float | str | type(None)) and k != "package"
    }
    manifest = {
        "format": FORMAT,
        "architecture": _architecture(trainer),
        "schema": trainer.cfg.schema.to_dict(),
        "normalizer": trainer.normalizer.to_dict(),
        "features": _features(trainer),
        "tables": tables_meta,
        "metadata": {
            "step": trainer.step,
            "samples_seen": trainer.samples_seen,
            "metrics": clean_metrics,
            "calibration": (metrics or {}).get("calibration"),
            "base_rate": trainer.base_rate,
            "created_at": time.time(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    (tmp / "model.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    _publish(tmp, out)
    return out


def export_delta(trainer: Trainer, root: Path, seq: int) -> Path:
    """Write the rows changed since the last delta as ``root/delta-<seq>``; return it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"delta-{seq:06d}"
    tmp = root / f".delta-{seq:06d}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "tables").mkdir(parents=True)
    counts = {}
    for name, table in trainer.tables.items():
        d = table.export_delta()
        _save_npz(
            tmp / "tables" / f"{name}.npz",
            {"ids": d["ids"], "values": d["values"], "evicted_ids": d["evicted_ids"]},
        )
        counts[name] = {"rows": int(d["ids"].shape[0]), "evicted": int(d["evicted_ids"].shape[0])}
    _save_torch(tmp / "dense.pt", trainer.model.state_dict())
    (tmp / "delta.json").write_text(json.dumps(
        {"format": FORMAT, "seq": seq, "step": trainer.step, "tables": counts,
         "created_at": time.time()}, indent=2) + "\n")
    _publish(tmp, final)
    return final


def _full_rows(cfg: TableConfig, ids: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """A table's row arrays from packaged ids/values (optimizer state and counts zero)."""
    n = ids.shape[0]
    return {
        "ids": ids.astype(np.int64, copy=False),
        "values": values,
        "optimizer_state": np.zeros((n, state_width(cfg.optimizer.kind, cfg.dim)), np.float32),
        "counts": np.zeros(n, np.uint32),
        "last_step": np.zeros(n, np.uint32),
        "last_time": np.zeros(n, np.float32),
    }


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise PackageError(f"cannot read {path}: {e}") from None


class ModelPackage:
    """A loaded model package: schema, tables (read-only use), model in eval mode."""

    def __init__(self, manifest: dict[str, Any], tables: dict[str, EmbeddingTable],
                 model: CTRModel) -> None:
        self.manifest = manifest
        self.schema = Schema.from_dict(manifest["schema"])
        # Learned numeric transforms travel in the package; a package written before them
        # applies what its schema declares, as its trainer did.
        self.normalizer = (Normalizer.from_dict(manifest["normalizer"])
                           if "normalizer" in manifest else Normalizer.declared(self.schema))
        self.tables = tables
        self.model = model.eval()
        self.delta_seq = 0

    @classmethod
    def load(cls, path: str | Path) -> ModelPackage:
        path = Path(path)
        try:
            manifest = json.loads((path / "model.json").read_text())
        except (OSError, ValueError) as e:
            raise PackageError(f"{path} is not a model package (model.json: {e})") from None
        if manifest.get("format") != FORMAT:
            raise PackageError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
        tables = {}
        for name, meta in manifest["tables"].items():
            cfg = TableConfig.from_dict(meta["config"])
            arrays = _load_npz(path / meta["file"])
            state = _full_rows(cfg, arrays["ids"], arrays["values"])
            state.update({"config": json.dumps(cfg.to_dict()), "step": 0})
            tables[name] = EmbeddingTable.from_state_dict(state)
        arch = manifest["architecture"]
        mods: dict[str, SparseEmbedding] = {}
        for module, specs in manifest["features"].items():
            fs = [FeatureSpec(s["key"], s["table"], s["pooling"]) for s in specs]
            fused = bool(arch.get("fused_linear", False))
            dim = arch["embedding_dim"] + (1 if fused else 0) if module == "embedding" else 1
            mods[module] = SparseEmbedding({f.table: tables[f.table] for f in fs}, fs, dim)
        model = build_model(
            arch["model"], mods.get("embedding"), mods.get("linear"), arch["n_dense"],
            hidden=arch["hidden"], dropout=arch["dropout"], cross_layers=arch["cross_layers"],
            bottom=arch["bottom"], fused_linear=bool(arch.get("fused_linear", False)),
        )
        model.load_state_dict(torch.load(path / "dense.pt", weights_only=True))
        return cls(manifest, tables, model)

    def apply_delta(self, path: str | Path) -> None:
        """Apply a delta directory: evictions and changed rows per table, new dense weights."""
        path = Path(path)
        try:
            info = json.loads((path / "delta.json").read_text())
        except (OSError, ValueError) as e:
            raise PackageError(f"{path} is not a delta (delta.json: {e})") from None
        deltas = {}
        for name, table in self.tables.items():
            arrays = _load_npz(path / "tables" / f"{name}.npz")
            d = _full_rows(table.config, arrays["ids"], arrays["values"])
            d["evicted_ids"] = arrays["evicted_ids"]
            deltas[name] = d
        dense = torch.load(path / "dense.pt", weights_only=True)
        for name, d in deltas.items():
            self.tables[name].apply_delta(d)
        self.model.load_state_dict(dense)
        self.delta_seq = int(info.get("seq", self.delta_seq + 1))

    @torch.no_grad()
    def predict_batch(self, batch: Batch) -> np.ndarray:
        """Click probabilities (B,) float32."""
        return torch.sigmoid(self.model(batch)).numpy().astype(np.float32)

    def predict_table(self, table: pa.Table) -> np.ndarray:
        """Probabilities for the rows of an Arrow table with the schema's feature columns."""
        from plinth.data.reader import table_to_batch

        if self.schema.label not in table.column_names:
            table = table.append_column(self.schema.label, pa.array(np.zeros(table.num_rows,
                                                                             np.float32)))
        batch = table_to_batch(table, self.schema, normalizer=self.normalizer)
        batch.validate()
        return self.predict_batch(batch)

    def predict_columns(self, columns: Mapping[str, Sequence[Any]], rows: int) -> np.ndarray:
        """Probabilities for ``rows`` rows given as feature columns: ``columns[name]`` holds
        the rows' raw values of one feature, as records hold them (an id, a list of ids, a
        number; ``None`` is missing); a feature absent from ``columns`` is missing in every
        row. Raises ``ValueError`` when a column's length is not ``rows``.

        This is the one place where raw values become predictions: ``predict_records`` and
        the server (which parses request bodies straight into columns) both call it."""
        cols: dict[str, pa.Array] = {}
        for name, typ in self._raw_types():
            vals = columns.get(name)
            if vals is None:
                vals = [None] * rows
            elif len(vals) != rows:
                raise ValueError(f"column {name!r} has {len(vals)} values for {rows} rows")
            cols[name] = pa.array(vals, typ)  # categorical (typ None): ints or strings
        return self.predict_table(pa.table(cols))

    def _raw_types(self) -> list[tuple[str, pa.DataType | None]]:
        return ([(f.name, None) for f in self.schema.categorical]
                + [(f.name, pa.float64()) for f in self.schema.numeric])

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities for feature dicts (``{"c1": 123, "tags": [1, 2], "n1": 0.5}``);
        a missing key is a null (empty categorical slot; a missing numeric value, which the
        package's learned transform fills exactly as in training). The public API for
        rows: the records become columns (:func:`record_columns`), then
        :meth:`predict_columns`."""
        return self.predict_columns(record_columns(self.schema, records), len(records))


def record_columns(schema: Schema, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Feature dicts as columns: each of ``schema``'s features -> its values, one a record
    (``None`` where a record lacks it); other keys (the label) are left out."""
    names = [f.name for f in schema.categorical] + [f.name for f in schema.numeric]
    return {name: [r.get(name) for r in records] for name in names}
