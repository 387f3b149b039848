"""Where a workload's files live, and preparing its code there.

PLINTH_HOME/                  0700, the server's alone (see plinth.config.secure_home)
  files/<sha[:2]>/<sha>.tar.gz            uploaded archives (content-addressed)
  code/<key>/                             each code version, extracted once, read-only
  workloads/<id>/<role>-<replica>.attempt-<n>.log   one log per replica attempt
  workloads/<id>/.status/                 the supervisors' status files
  workloads/<id>/code/                    the working directory, single-user mode
RUN_ROOT/                     0711 root: ``isolation.run_root``, isolated mode only
  <id>/                                   0700, owned by the group's OS user: the
                                          working directory of the workload's replicas

A working directory is a tree of hard links to the shared code version (``code/<key>``,
where ``key`` is the archive's sha256 or the git URL's hash and commit): its
directories belong to the replicas, who may add, rename and remove files, while the
shared files stay read-only (0444/0555, owned by the server) -- one extraction per
code version, whatever the number of workloads. The shared copy itself is under the
0700 home, so a replica reaches the code only through a working directory of its own.

With isolation (:func:`isolate_workdirs`, set up by the composition root when the
server is root) the working directory is made under ``RUN_ROOT`` and owned by the
OS user the workload's group runs as; the local executor then runs the replicas as
that owner.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CodeError",
    "Isolation",
    "code_dir",
    "code_key",
    "file_path",
    "isolate_workdirs",
    "log_path",
    "prepare_code",
    "shared_code_dir",
    "workdir_of",
    "workload_dir",
]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class CodeError(RuntimeError):
    """The workload's code could not be put in place; the message says why."""


@dataclass(frozen=True)
class Isolation:
    """Working directories of isolated replicas: under ``run_root``, owned by
    ``owner_of(workload_id) -> (uid, gid)``."""

    run_root: Path
    owner_of: Callable[[str], tuple[int, int]]


_ISOLATION: dict[Path, Isolation] = {}
_ISOLATION_LOCK = threading.Lock()


def isolate_workdirs(home: Path, isolation: Isolation | None) -> None:
    """From now on, workloads of the server at `home` get their working directory as
    `isolation` says (None: back to single-user mode, under home). Creates
    ``run_root`` (0711, with every missing parent 0711) so other users can reach
    their own directory in it and list nothing."""
    key = Path(home).absolute()
    with _ISOLATION_LOCK:
        if isolation is None:
            _ISOLATION.pop(key, None)
            return
        _make_traversable(isolation.run_root)
        _ISOLATION[key] = isolation


def _make_traversable(path: Path) -> None:
    missing = []
    p = path.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
        os.chmod(d, 0o711)  # not the umask's 0700: each user must pass through
    os.chmod(path, 0o711)


def file_path(home: Path, sha256: str) -> Path:
    """Path of the uploaded archive with this sha256."""
    return home / "files" / sha256[:2] / f"{sha256}.tar.gz"


def workload_dir(home: Path, workload_id: str) -> Path:
    """The workload's server-side directory: its logs and status files."""
    return home / "workloads" / _SAFE.sub("_", workload_id)


def code_dir(home: Path, workload_id: str) -> Path:
    """The working directory of every replica of the workload in single-user mode."""
    return workload_dir(home, workload_id) / "code"


def workdir_of(home: Path, workload_id: str) -> Path:
    """The working directory of the workload's replicas (isolated or not)."""
    iso = _ISOLATION.get(Path(home).absolute())
    if iso is None:
        return code_dir(home, workload_id)
    return iso.run_root / _SAFE.sub("_", workload_id)


def log_path(home: Path, workload_id: str, role: str, replica: int, attempt: int) -> Path:
    """The log of one attempt of one replica (kept after the attempt ends)."""
    return workload_dir(home, workload_id) / f"{role}-{replica}.attempt-{attempt}.log"


def code_key(code: dict[str, Any]) -> str:
    """The name of a code version in ``PLINTH_HOME/code``: ``file-<sha256>`` or
    ``git-<hash of the URL>-<commit>``."""
    if code["kind"] == "file":
        return f"file-{code['sha256']}"
    if code["kind"] == "git":
        url = hashlib.sha256(code["url"].encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return f"git-{url}-{code['commit']}"
    raise CodeError(f"unknown code kind {code['kind']!r}")


def shared_code_dir(home: Path, code: dict[str, Any]) -> Path:
    """Where this code version is (or will be) extracted, once for every workload."""
    return home / "code" / code_key(code)


def prepare_code(
    home: Path,
    workload_id: str,
    code: dict[str, Any] | None,
    limits: Any,
    *,
    git_timeout_s: float | None = None,
    git_protocols: tuple[str, ...] | None = None,
) -> Path:
    """Put the workload's code in its working directory (once; later attempts reuse it)
    and return that directory (see the module docstring for where it is: it may lie
    outside PLINTH_HOME).

    ``code`` is the record made at submit: None (empty directory), ``{"kind": "file",
    "sha256"}`` (the uploaded archive) or ``{"kind": "git", "url", "commit"}`` (exactly
    that commit, checked out within `git_timeout_s` seconds over the transports
    `git_protocols`; the library's defaults when None). The code version is extracted
    once into ``PLINTH_HOME/code`` and the working directory links to it. Raises
    CodeError with the reason on failure. May take long: callers run it outside the
    control loop's thread.
    """
    dest = workdir_of(home, workload_id)
    if dest.is_dir():
        return dest
    iso = _ISOLATION.get(Path(home).absolute())
    try:
        git = {"timeout_s": git_timeout_s, "protocols": git_protocols}
        git = {k: v for k, v in git.items() if v is not None}
        shared = None if code is None else _shared_code(home, code, limits, git)
        owner = iso.owner_of(workload_id) if iso is not None else None
        _link_workdir(shared, dest, owner)
    except CodeError:
        raise
    except Exception as e:  # foreign errors (archive, git, OS) become one reason
        raise CodeError(f"could not prepare the code: {e}") from e
    return dest


def _shared_code(
    home: Path, code: dict[str, Any], limits: Any, git_options: dict[str, Any]
) -> Path:
    """The extracted, read-only code version; extracted now if it is not yet."""
    target = shared_code_dir(home, code)
    if target.is_dir():
        return target
    staging = target.parent / f".staging-{secrets.token_hex(8)}"
    staging.mkdir(parents=True)
    try:
        tree = staging / "tree"
        if code["kind"] == "file":
            from plinth.artifacts.archive import extract_archive

            extract_archive(file_path(home, code["sha256"]).read_bytes(), tree, limits)
        else:
            from plinth.artifacts.gitcode import checkout

            checkout(code["url"], code["commit"], tree, **git_options)
        _freeze(tree)
        try:
            os.rename(tree, target)
        except OSError as e:  # extracted concurrently by another preparation: use that
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _freeze(root: Path) -> None:
    """Make a code tree read-only and readable by whoever reaches it through a link:
    directories 0755, files 0444 (0555 when executable). Links are left alone."""
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                os.chmod(path, 0o555 if st.st_mode & 0o111 else 0o444)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)  # another file system (or too many links): a copy


def _link_workdir(shared: Path | None, dest: Path, owner: tuple[int, int] | None) -> None:
    """Create ``dest`` (0700) as a tree of hard links to ``shared`` (or empty), its
    directories owned by ``owner`` (uid, gid) when given; all at once (rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}"
    try:
        if shared is None:
            tmp.mkdir()
        else:
            shutil.copytree(shared, tmp, symlinks=True, copy_function=_link)
        if owner is not None:
            uid, gid = owner
            for dirpath, dirnames, _ in os.walk(tmp):
                os.chown(dirpath, uid, gid)
                for name in dirnames:  # links to directories: the link itself
                    path = os.path.join(dirpath, name)
                    if os.path.islink(path):
                        os.lchown(path, uid, gid)
        os.chmod(tmp, 0o700)
        try:
            os.rename(tmp, dest)
        except OSError as e:  # prepared concurrently: keep the first
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not dest.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
