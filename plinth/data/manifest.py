"""A dataset's manifest: the one file that says which Parquet files make the dataset whole.

Layout of a dataset directory::

    dataset/
      manifest.json            written last, atomically (temporary file, fsync, rename)
      schema.yaml              the resolved schema (learned bucket boundaries filled in)
      date=2026-11-01/part-<fingerprint>.parquet
      _BUILDING                present while a build runs (and after one was killed)

``manifest.json`` (format ``plinth.dataset/v1``): ``schema_hash`` (of ``schema.yaml``),
``declared_schema_hash`` (of the spec's schema before learning), ``rows``,
``label_rates`` over all days, ``inputs`` (per input, per file: path, size, sha256,
first and last timestamp) and ``days``: per date its ``files``, ``rows``,
``label_rates`` and the ``fingerprint`` of everything that decided its rows (schema,
mappings, and the content hashes of the input files that can reach that day). A file in
the directory that the manifest does not list is not part of the dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "BUILDING_MARKER",
    "FORMAT",
    "MANIFEST",
    "dataset_files",
    "read_manifest",
    "write_atomic",
]

FORMAT = "plinth.dataset/v1"
MANIFEST = "manifest.json"
BUILDING_MARKER = "_BUILDING"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new bytes, never
    a mix: write a sibling, fsync it, rename it over, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest of a dataset directory, or None when it has none (never finished)."""
    p = Path(directory) / MANIFEST
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"dataset manifest {p} is unreadable ({e}); rebuild the dataset") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError(f"{p} is not a {FORMAT} manifest; rebuild the dataset")
    return m


def dataset_files(directory: str | Path, manifest: dict[str, Any]) -> list[Path]:
    """The Parquet files a manifest lists, in date order, as paths under ``directory``."""
    base = Path(directory)
    return [base / f for day in sorted(manifest["days"]) for f in manifest["days"][day]["files"]]
