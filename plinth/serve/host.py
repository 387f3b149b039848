"""The served model: one version (plus the deltas applied to it), swapped atomically.

Every batch reads the model through :meth:`ModelHost.predict`, which takes a snapshot of
the active :class:`Loaded` (one attribute read) and holds that copy's lock while it runs,
so a batch always sees one version and one delta, never half of each.

Changes never touch the copy that serves:

- a new version is loaded (and warmed up by one prediction) beside the old one, then the
  active reference moves to it;
- deltas are applied double-buffered: the host keeps two copies of the serving version,
  applies a delta to the idle copy (waiting for any batch still using it), makes it the
  active one, then brings the other copy up to the same delta. Memory is twice the model's;
  in return a delta costs only its own rows, never a reload.

A failed load or delta changes nothing that serves and says why (``PackageError``).
Control calls are serialised by one lock; predictions do not wait for them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plinth.data.schema import Schema
from plinth.serve.protocol import Columns
from plinth.train.package import ModelPackage, PackageError

__all__ = ["DeltaOutOfOrder", "InvalidRecords", "Loaded", "ModelHost", "PackageError",
           "Prediction"]


class DeltaOutOfOrder(PackageError):
    """A delta whose sequence number is not after the last one applied."""


class InvalidRecords(ValueError):
    """A request's records could not be turned into features; the message says why."""


@dataclass
class Loaded:
    """One in-memory copy of a version with the deltas applied to it so far."""

    package: ModelPackage
    version: str
    path: Path
    deltas: list[Path] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def delta_seq(self) -> int:
        return self.package.delta_seq


@dataclass(frozen=True)
class Prediction:
    """Probabilities for one request's rows and what produced them."""

    probabilities: np.ndarray
    version: str
    delta_seq: int


class ModelHost:
    """Serves model ``name`` from a package directory; see the module docstring."""

    def __init__(self, name: str, path: str | Path, version: str = "1") -> None:
        self.name = name
        self._control = threading.Lock()
        self._active, self._standby = self._load_pair(Path(path), version)
        self.last_delta_time: float | None = None

    # ------------------------------------------------------------------ reading

    @property
    def version(self) -> str:
        return self._active.version

    @property
    def delta_seq(self) -> int:
        return self._active.delta_seq

    @property
    def schema(self) -> Schema:
        return self._active.package.schema

    def describe(self) -> dict[str, Any]:
        a = self._active
        meta = a.package.manifest.get("metadata", {})
        return {"name": self.name, "version": a.version, "delta_seq": a.delta_seq,
                "architecture": a.package.manifest.get("architecture", {}),
                "step": meta.get("step"), "last_delta_time": self.last_delta_time}

    def predict(self, requests: Sequence[Columns]) -> list[Any]:
        """One result per request: a :class:`Prediction`, or the exception that request
        alone raised. The requests' columns are joined and run as one
        ``predict_columns`` call; when that fails, each runs alone so that one malformed
        request fails only itself."""
        loaded = self._active
        with loaded.lock, torch.inference_mode():
            sizes = [r.rows for r in requests]
            joined = Columns.concat(requests) if requests else None
            try:
                probs = (loaded.package.predict_columns(joined.data, joined.rows)
                         if joined is not None and joined.rows else np.empty(0, np.float32))
            except Exception:  # noqa: BLE001 - retried one by one below to find the culprit
                return [self._predict_one(loaded, r) for r in requests]
            out, start = [], 0
            for n in sizes:
                out.append(Prediction(probs[start:start + n], loaded.version, loaded.delta_seq))
                start += n
            return out

    @staticmethod
    def _predict_one(loaded: Loaded, columns: Columns) -> Any:
        try:  # (inside predict's inference_mode)
            return Prediction(loaded.package.predict_columns(columns.data, columns.rows),
                              loaded.version, loaded.delta_seq)
        except Exception as e:  # noqa: BLE001 - the request's own fault: reported as a 4xx
            return InvalidRecords(f"the records cannot be scored: {e}")

    # ------------------------------------------------------------------ changing

    def load_version(self, path: str | Path, version: str) -> None:
        """Load ``path`` as ``version`` beside the serving one, warm it up, swap it in."""
        with self._control:
            active, standby = self._load_pair(Path(path), str(version))
            self._active, self._standby = active, standby

    def apply_delta(self, path: str | Path, seq: int | None = None) -> int:
        """Apply the delta at ``path`` to the serving version; return its sequence number.

        ``seq`` (when given, else the delta's own ``delta.json``) must be greater than the
        last applied one: a delta out of order is refused (``PackageError``)."""
        path = Path(path)
        with self._control:
            want = _delta_seq(path) if seq is None else int(seq)
            if want <= self._active.delta_seq:
                raise DeltaOutOfOrder(f"delta {want} is not after the applied delta "
                                   f"{self._active.delta_seq} of version {self.version}")
            idle = self._standby
            with idle.lock:
                try:
                    idle.package.apply_delta(path)
                except Exception as e:
                    self._standby = self._rebuild(idle)  # may be half-applied: start again
                    if isinstance(e, PackageError):
                        raise
                    raise PackageError(f"cannot apply delta {path}: {e}") from None
                idle.package.delta_seq = want
                idle.deltas.append(path)
            old, self._active = self._active, idle
            with old.lock:  # waits for a batch that took `old` before the swap
                old.package.apply_delta(path)
                old.package.delta_seq = want
                old.deltas.append(path)
            self._standby = old
            self.last_delta_time = time.time()
            return want

    # ------------------------------------------------------------------ loading

    def _load_pair(self, path: Path, version: str) -> tuple[Loaded, Loaded]:
        pair = (Loaded(_load_warm(path), version, path), Loaded(_load_warm(path), version, path))
        return pair

    def _rebuild(self, loaded: Loaded) -> Loaded:
        fresh = Loaded(_load_warm(loaded.path), loaded.version, loaded.path)
        for d in loaded.deltas:
            fresh.package.apply_delta(d)
        fresh.package.delta_seq = loaded.delta_seq
        fresh.deltas = list(loaded.deltas)
        return fresh


def _load_warm(path: Path) -> ModelPackage:
    try:
        pkg = ModelPackage.load(path)
    except PackageError:
        raise
    except Exception as e:  # noqa: BLE001 - a foreign or damaged package: say so
        raise PackageError(f"{path} is not a loadable model package: {e}") from None
    pkg.predict_records([{}])  # compiles/caches the kernels before any request waits on them
    return pkg


def _delta_seq(path: Path) -> int:
    try:
        return int(json.loads((path / "delta.json").read_text())["seq"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PackageError(f"{path} is not a delta (delta.json: {e})") from None
