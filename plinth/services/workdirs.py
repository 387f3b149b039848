"""Where a workload's files live under PLINTH_HOME, and preparing its code there.

PLINTH_HOME/
  files/<sha[:2]>/<sha>.tar.gz               uploaded archives (content-addressed)
  workloads/<id>/code/                       the replicas' working directory
  workloads/<id>/<role>-<replica>.attempt-<n>.log        one log per replica attempt
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["CodeError", "code_dir", "file_path", "log_path", "prepare_code", "workload_dir"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class CodeError(RuntimeError):
    """The workload's code could not be put in place; the message says why."""


def file_path(home: Path, sha256: str) -> Path:
    """Path of the uploaded archive with this sha256."""
    return home / "files" / sha256[:2] / f"{sha256}.tar.gz"


def workload_dir(home: Path, workload_id: str) -> Path:
    return home / "workloads" / _SAFE.sub("_", workload_id)


def code_dir(home: Path, workload_id: str) -> Path:
    """The working directory of every replica of the workload."""
    return workload_dir(home, workload_id) / "code"


def log_path(home: Path, workload_id: str, role: str, replica: int, attempt: int) -> Path:
    """The log of one attempt of one replica (kept after the attempt ends)."""
    return workload_dir(home, workload_id) / f"{role}-{replica}.attempt-{attempt}.log"


def prepare_code(
    home: Path,
    workload_id: str,
    code: dict[str, Any] | None,
    limits: Any,
    *,
    git_timeout_s: float | None = None,
    git_protocols: tuple[str, ...] | None = None,
) -> Path:
    """Put the workload's code in its working directory (once; later attempts reuse it).

    ``code`` is the record made at submit: None (empty directory), ``{"kind": "file",
    "sha256"}`` (extract the uploaded archive) or ``{"kind": "git", "url", "commit"}``
    (check out exactly that commit, within `git_timeout_s` seconds over the transports
    `git_protocols`; the library's defaults when None). Raises CodeError with the reason
    on failure. May take long: callers run it outside the control loop's thread.
    """
    dest = code_dir(home, workload_id)
    # This runs on the submit-to-running path: as few file system calls as possible.
    try:
        if code is None:
            os.makedirs(dest, exist_ok=True)
            return dest
        if dest.is_dir():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        if code["kind"] == "file":
            from plinth.artifacts.archive import extract_archive

            data = file_path(home, code["sha256"]).read_bytes()
            extract_archive(data, dest, limits)
        elif code["kind"] == "git":
            from plinth.artifacts.gitcode import checkout

            options: dict[str, Any] = {}
            if git_timeout_s is not None:
                options["timeout_s"] = git_timeout_s
            if git_protocols is not None:
                options["protocols"] = git_protocols
            checkout(code["url"], code["commit"], dest, **options)
        else:  # pragma: no cover - records are written by this package only
            raise CodeError(f"unknown code kind {code['kind']!r}")
    except CodeError:
        raise
    except Exception as e:  # foreign errors (archive, git, OS) become one reason
        raise CodeError(f"could not prepare the code: {e}") from e
    if not dest.is_dir():
        raise CodeError(f"could not prepare the code: {dest} was not created")
    return dest
