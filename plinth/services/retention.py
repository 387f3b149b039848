"""Retention: remove what finished long enough ago, and nothing else.

A sweep (``plinth admin gc``, ``POST /api/v1/admin/gc``, and a background thread every
``retention.sweep_interval``) removes

* the working directory, logs and status files of each workload that finished more
  than ``retention.workloads`` ago and has no replica left running (its database
  records -- state, events, replicas -- stay: ``plinth job get`` still answers);
* each uploaded archive that no live workload uses and that no workload was
  submitted with or finished with during the last ``retention.uploads`` (and that is
  older than that): the file, its row and grants, and its extracted code version;
* each extracted git code version that no such workload uses and that was not
  touched during ``retention.uploads``; staging leftovers older than a day.

Directories whose workload the database does not know are left alone (another server
may share ``isolation.run_root``). :func:`plan_sweep` is the pure decision;
:func:`sweep` reads the state, applies the plan and reports what it removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from plinth.config import RetentionConfig
from plinth.services.lifecycle import FINAL, LIVE
from plinth.services.workdirs import code_key, file_path, workdir_of, workload_dir
from plinth.store.db import Database
from plinth.store.models import File, FileGrant, Replica, Workload, utcnow

__all__ = ["GcReport", "RetentionSweeper", "WorkloadInfo", "plan_sweep", "sweep"]

log = logging.getLogger("plinth.retention")

_FINAL = [s.value for s in FINAL]
_LIVE = [s.value for s in LIVE]
#: Staging directories of an interrupted extraction are removed after this long.
_STAGING_MAX_AGE = timedelta(days=1)


@dataclass(frozen=True)
class WorkloadInfo:
    """What the sweep needs to know of a workload whose directories exist."""

    id: str
    final: bool
    finished_at: datetime | None
    replicas_running: bool


@dataclass
class GcReport:
    """What one sweep removed (ids, sha256s, code keys) and the bytes freed."""

    workloads: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    code_versions: list[str] = field(default_factory=list)
    bytes_freed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "workloads": self.workloads,
            "uploads": self.uploads,
            "code_versions": self.code_versions,
            "bytes_freed": self.bytes_freed,
        }


def plan_sweep(
    workloads: Iterable[WorkloadInfo],
    uploads: Iterable[tuple[str, datetime]],
    code_versions: Iterable[tuple[str, datetime]],
    used_codes: set[str],
    now: datetime,
    cfg: RetentionConfig,
) -> tuple[list[str], list[str], list[str]]:
    """Pure: (workload ids, upload sha256s, code keys) to remove.

    `workloads`: those with directories on disk; `uploads`: (sha256, created_at);
    `code_versions`: (key, last modified) of extracted code; `used_codes`: code keys
    of live workloads and of workloads submitted or finished within
    ``cfg.uploads``."""
    done_before = now - timedelta(seconds=cfg.workloads)
    unused_since = now - timedelta(seconds=cfg.uploads)
    gone = [
        w.id
        for w in workloads
        if w.final and not w.replicas_running
        and w.finished_at is not None and w.finished_at <= done_before
    ]  # fmt: skip
    files = [
        sha for sha, created in uploads
        if created <= unused_since and f"file-{sha}" not in used_codes
    ]  # fmt: skip
    removed_files = {f"file-{sha}" for sha in files}
    codes = [
        key for key, touched in code_versions
        if key not in used_codes and (key in removed_files or touched <= unused_since)
    ]  # fmt: skip
    return gone, files, codes


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _remove(path: Path) -> int:
    """Remove a file or a tree (never following links); the bytes it held."""
    if path.is_symlink() or path.is_file():
        size = path.lstat().st_size
        path.unlink(missing_ok=True)
        return size
    if not path.exists():
        return 0
    size = _size(path)
    shutil.rmtree(path, ignore_errors=True)
    return size


def _workload_ids_on_disk(home: Path) -> set[str]:
    ids: set[str] = set()
    root = home / "workloads"
    if root.is_dir():
        ids.update(p.name for p in root.iterdir())
    probe = workdir_of(home, "x").parent
    if probe != root and probe.is_dir():
        ids.update(p.name for p in probe.iterdir() if not p.name.startswith("."))
    return ids


def _workload_infos(s: Session, ids: set[str]) -> list[WorkloadInfo]:
    out: list[WorkloadInfo] = []
    id_list = sorted(ids)
    for i in range(0, len(id_list), 500):
        chunk = id_list[i : i + 500]
        running = set(
            s.scalars(
                select(Replica.workload_id).where(
                    Replica.workload_id.in_(chunk), Replica.state.in_(["launching", "running"])
                )
            )
        )
        for wid, state, finished in s.execute(
            select(Workload.id, Workload.state, Workload.finished_at).where(Workload.id.in_(chunk))
        ):
            out.append(WorkloadInfo(wid, state in _FINAL, finished, wid in running))
    return out


def _used_codes(s: Session, since: datetime) -> set[str]:
    rows = s.scalars(
        select(Workload.code).where(
            Workload.code.is_not(None),
            or_(
                Workload.state.in_(_LIVE),
                Workload.created_at >= since,
                Workload.finished_at >= since,
            ),
        )
    )
    return {code_key(c) for c in rows if isinstance(c, dict) and c.get("kind") in ("file", "git")}


def _code_versions(home: Path, now: datetime) -> tuple[list[tuple[str, datetime]], list[Path]]:
    """(key, mtime) of extracted code versions, and stale staging directories."""
    root = home / "code"
    versions: list[tuple[str, datetime]] = []
    stale: list[Path] = []
    if not root.is_dir():
        return versions, stale
    for p in root.iterdir():
        touched = datetime.fromtimestamp(p.lstat().st_mtime, tz=now.tzinfo)
        if p.name.startswith(".staging-"):
            if now - touched > _STAGING_MAX_AGE:
                stale.append(p)
        else:
            versions.append((p.name, touched))
    return versions, stale


def sweep(db: Database, home: Path, cfg: RetentionConfig, now: datetime | None = None) -> GcReport:
    """Remove what retention says (see the module docstring); report it."""
    now = now or utcnow()
    report = GcReport()
    since = now - timedelta(seconds=cfg.uploads)
    with db.read() as s:
        infos = _workload_infos(s, _workload_ids_on_disk(home))
        uploads = [
            (sha, created) for sha, created in s.execute(select(File.sha256, File.created_at))
        ]
        used = _used_codes(s, since)
    versions, stale = _code_versions(home, now)
    gone, files, codes = plan_sweep(infos, uploads, versions, used, now, cfg)
    for wid in gone:
        report.bytes_freed += _remove(workdir_of(home, wid)) + _remove(workload_dir(home, wid))
        report.workloads.append(wid)
    for sha in files:
        with db.session() as s:
            # Checked again in the deleting transaction: a submit since the read wins.
            if f"file-{sha}" in _used_codes(s, since):
                continue
            s.execute(delete(FileGrant).where(FileGrant.sha256 == sha))
            s.execute(delete(File).where(File.sha256 == sha))
        report.bytes_freed += _remove(file_path(home, sha))
        report.uploads.append(sha)
    for key in codes:
        report.bytes_freed += _remove(home / "code" / key)
        report.code_versions.append(key)
    for p in stale:
        report.bytes_freed += _remove(p)
    if gone or files or codes:
        log.info(
            "retention: removed %d finished workload(s)' files, %d upload(s), "
            "%d code version(s); %d bytes freed",
            len(gone), len(files), len(codes), report.bytes_freed,
        )  # fmt: skip
    return report


class RetentionSweeper:
    """Sweeps every ``cfg.sweep_interval`` seconds in a daemon thread (first one a
    minute after start, so a start-up is not slowed). ``stop()`` ends it."""

    def __init__(
        self, db: Database, home: Path, cfg: RetentionConfig, first_after_s: float = 60.0
    ) -> None:
        self._run: Callable[[], GcReport] = lambda: sweep(db, home, cfg)
        self._interval = cfg.sweep_interval
        self._first = first_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plinth-retention", daemon=True)

    def start(self) -> RetentionSweeper:
        self._thread.start()
        return self

    def _loop(self) -> None:
        wait = self._first
        while not self._stop.wait(wait):
            try:
                self._run()
            except Exception:
                log.exception("retention sweep failed")
            wait = self._interval

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
