"""Code uploads: validated, content-addressed archives under PLINTH_HOME/files/.

An upload is checked with ``plinth.artifacts.archive.validate_archive`` before anything
is written; a refused upload leaves no file and no row. The body's size cap is
enforced while reading (see ``plinth.api.routers.files``), so an oversized body is
never held in memory.

An archive belongs to the groups that uploaded it (``FileGrant``): only their members
(and admins) may see it or run it, so knowing another group's sha256 is no way in.
Upload quotas (``uploads.max_per_user``, ``uploads.max_total``, bytes of stored
archives) are checked before anything is written: 413 naming the cap and the usage.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from plinth.config import UploadsConfig
from plinth.services.auth import Principal, require_unscoped
from plinth.services.errors import NotFound, Rejected, ServiceError, TooLarge
from plinth.services.workdirs import file_path
from plinth.store.models import File, FileGrant

__all__ = ["archive_limits", "check_archive", "get_file", "store_file", "usable_by"]


class StorageFull(ServiceError):
    """The server's disk (or its file size limit) refused the upload: 507."""

    status = 507


#: errno values meaning "no room": no space, quota exceeded, file too large.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


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


def usable_by(session: Session, p: Principal, sha256: str) -> bool:
    """Whether `p` may see and run the archive: an admin, or a member of a group
    that uploaded it."""
    if p.admin:
        return session.get(File, sha256) is not None
    return session.get(FileGrant, (sha256, p.group_id)) is not None


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _check_quotas(
    session: Session, p: Principal, size: int, new_bytes: bool, cfg: UploadsConfig
) -> None:
    """Raise TooLarge when `p` claiming an archive of `size` bytes (stored anew when
    `new_bytes`) breaks an upload quota."""
    mine = session.scalar(
        select(func.coalesce(func.sum(File.size), 0))
        .join(FileGrant, FileGrant.sha256 == File.sha256)
        .where(FileGrant.user_id == p.user_id)
    )
    if mine + size > cfg.max_per_user:
        raise TooLarge(
            f"upload quota: {p.user}'s uploads hold {_mib(mine)}; this {_mib(size)} archive "
            f"would pass the per-user cap of {_mib(cfg.max_per_user)} (uploads.max_per_user). "
            "Uploads no job uses are removed by retention; ask an admin to run "
            "`plinth admin gc` or raise the cap"
        )
    total = session.scalar(select(func.coalesce(func.sum(File.size), 0)))
    if new_bytes and total + size > cfg.max_total:
        raise TooLarge(
            f"upload quota: stored uploads hold {_mib(total)}; this {_mib(size)} archive "
            f"would pass the server's total cap of {_mib(cfg.max_total)} "
            "(uploads.max_total). Ask an admin to run `plinth admin gc` or raise the cap"
        )


def store_file(
    session: Session, p: Principal, home: Path, data: bytes, cfg: UploadsConfig
) -> tuple[File, bool]:
    """Validate and store an archive for `p`'s group; return (row, created). Same bytes
    -> same row; created is True when this group had not uploaded them before."""
    require_unscoped(p)
    sha = check_archive(data, cfg)  # the validation hashed the bytes already
    row = session.get(File, sha)
    path = file_path(home, sha)
    granted = session.get(FileGrant, (sha, p.group_id)) is not None
    if row is not None and path.exists() and granted:
        return row, False
    if not granted:
        # A user's quota counts every archive its grants claim, stored anew or not.
        _check_quotas(session, p, len(data), row is None, cfg)
    if row is None or not path.exists():
        _write(path, data)
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
    if not granted:
        try:
            with session.begin_nested():
                session.add(FileGrant(sha256=sha, group_id=p.group_id, user_id=p.user_id))
                session.flush()
        except IntegrityError:
            return row, False  # granted concurrently by the same bytes from this group
    return row, not granted


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` all at once (temp file, fsync, rename); StorageFull when
    the disk has no room (nothing is left behind, and no row is written after it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    except OSError as e:
        raise _no_room(e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _no_room(e) from e
        raise


def _no_room(e: OSError) -> Exception:
    if e.errno in _NO_ROOM:
        return StorageFull(
            f"the server's artifact storage is full ({e.strerror}); nothing was stored: "
            "ask an admin to free space (`plinth admin gc`) and upload again"
        )
    return e


def get_file(session: Session, p: Principal, sha256: str) -> File:
    """Metadata of an uploaded file (404 to members of groups that did not upload it)."""
    require_unscoped(p)
    row = session.get(File, sha256)
    if row is None or not usable_by(session, p, sha256):
        raise NotFound(f"file {sha256!r} not found")
    return row
