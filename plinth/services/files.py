"""Code uploads: validated, content-addressed archives under PLINTH_HOME/files/.

An upload is checked with ``plinth.artifacts.archive.validate_archive`` before anything
is written; a refused upload leaves no file and no row. The body's size cap is
enforced while reading (see ``plinth.api.routers.files``), so an oversized body is
never held in memory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from plinth.config import UploadsConfig
from plinth.services.auth import Principal, require_unscoped
from plinth.services.errors import NotFound, Rejected, TooLarge
from plinth.services.workdirs import file_path
from plinth.store.models import File

__all__ = ["archive_limits", "check_archive", "get_file", "store_file"]


def archive_limits(cfg: UploadsConfig):
    """The ArchiveLimits matching this server's upload configuration."""
    from plinth.artifacts.archive import ArchiveLimits

    return ArchiveLimits(
        max_packed_bytes=cfg.max_packed,
        max_unpacked_bytes=cfg.max_unpacked,
        max_files=cfg.max_files,
    )


def check_archive(data: bytes, cfg: UploadsConfig) -> str:
    """Return the archive's sha256 (hex); raise Rejected/TooLarge naming the problem
    when `data` is not a safe archive."""
    from plinth.artifacts.archive import ArchiveTooLargeError, UnsafeArchiveError

    if len(data) > cfg.max_packed:
        raise TooLarge(
            f"upload is {len(data)} bytes, over this server's cap of {cfg.max_packed} bytes"
        )
    try:
        from plinth.artifacts.archive import validate_archive

        return validate_archive(data, archive_limits(cfg)).sha256
    except ArchiveTooLargeError as e:
        raise TooLarge(str(e)) from None
    except UnsafeArchiveError as e:
        raise Rejected(f"archive refused: {e}") from None
    except Exception as e:  # noqa: BLE001 - not a tar.gz at all, truncated, ...
        raise Rejected(f"archive refused: not a readable .tar.gz ({e})") from None


def store_file(
    session: Session, p: Principal, home: Path, data: bytes, cfg: UploadsConfig
) -> tuple[File, bool]:
    """Validate and store an archive; return (row, created). Same bytes -> same row."""
    require_unscoped(p)
    sha = check_archive(data, cfg)  # the validation hashed the bytes already
    row = session.get(File, sha)
    path = file_path(home, sha)
    if row is not None and path.exists():
        return row, False
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if row is None:
        try:
            with session.begin_nested():  # the same bytes uploaded concurrently: not an error
                row = File(sha256=sha, size=len(data), user_id=p.user_id)
                session.add(row)
                session.flush()
        except IntegrityError:
            row = session.get(File, sha)
            if row is None:  # pragma: no cover - the conflict was not on this sha256
                raise
            return row, False
        return row, True
    return row, False


def get_file(session: Session, p: Principal, sha256: str) -> File:
    """Metadata of an uploaded file."""
    require_unscoped(p)
    row = session.get(File, sha256)
    if row is None:
        raise NotFound(f"file {sha256!r} not found")
    return row
