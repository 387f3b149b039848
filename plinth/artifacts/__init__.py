"""Artifacts: code uploads (tar.gz, validated and extracted safely) and code from git.

See :mod:`plinth.artifacts.archive` and :mod:`plinth.artifacts.gitcode`.
"""

from plinth.artifacts.archive import (
    ArchiveInfo,
    ArchiveLimits,
    ArchiveTooLargeError,
    UnsafeArchiveError,
    extract_archive,
    pack_directory,
    validate_archive,
)
from plinth.artifacts.gitcode import GitError, checkout, is_commit_id, resolve_ref

__all__ = [
    "ArchiveInfo",
    "ArchiveLimits",
    "ArchiveTooLargeError",
    "GitError",
    "UnsafeArchiveError",
    "checkout",
    "extract_archive",
    "is_commit_id",
    "pack_directory",
    "resolve_ref",
    "validate_archive",
]
