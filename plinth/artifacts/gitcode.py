"""Code from git: resolve a ref to a commit at submit time, check a commit out later.

A job's ``code: {git: URL, ref: REF}`` is resolved once, when it is submitted, to
a full commit id that is recorded; every run (and rerun) checks out exactly that
commit, so a new commit on the branch never changes what a recorded job runs.

``URL`` is a local path, a ``file://`` URL, or a remote (``https://``, ``ssh://``,
``git@host:path``). Local repositories are read directly (``git rev-parse``);
remote refs are listed with ``git ls-remote``, and a commit id or short id is
checked with a shallow / blob-less fetch. Git always runs without a terminal
prompt (``GIT_TERMINAL_PROMPT=0``, ssh in batch mode) and under a timeout, so a
repository that asks for credentials fails with a clear :class:`GitError` instead
of hanging the server.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from plinth.artifacts._staging import staged_directory

__all__ = ["GitError", "checkout", "is_commit_id", "resolve_ref"]

#: Seconds any one git command may take.
GIT_TIMEOUT_S = 120.0
_FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # sha1 or sha256 repositories
_SHORT_ID = re.compile(r"[0-9a-fA-F]{4,64}")


class GitError(ValueError):
    """A repository or ref could not be used; the message says what to fix."""


def is_commit_id(text: str) -> bool:
    """Whether ``text`` is a full commit id (40 hex digits, or 64 for sha256 repos)."""
    return bool(_FULL_ID.fullmatch(text))


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    env["LC_ALL"] = "C"  # messages we match on are in English
    # A repository's own hooks or the caller's position must not leak in.
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    env.pop("GIT_INDEX_FILE", None)
    return env


def _git(
    args: list[str], cwd: str | Path | None = None, timeout: float = GIT_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run git; never raises for a non-zero status (callers word the error)."""
    try:
        return subprocess.run(
            # file:// and local paths are what tests and single-machine setups use;
            # ext:: (runs a command) stays off whatever the user's config says.
            ["git", "-c", "protocol.file.allow=always", "-c", "protocol.ext.allow=never", *args],
            check=False,
            cwd=cwd,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise GitError("git is not installed on the server: install git to use git code") from None
    except subprocess.TimeoutExpired:
        raise GitError(
            f"git {args[0]} took more than {timeout:g}s; check that the repository is "
            "reachable and does not need credentials"
        ) from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _local_path(url: str) -> Path | None:
    """The filesystem path of a local repository URL, or ``None`` for a remote."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" in url:
        return None
    # scp-like "host:path" (but not "./a:b" or "/a:b", which are paths)
    if re.match(r"^[A-Za-z0-9_.@-]+:", url) and not url.startswith((".", "/")):
        return None
    return Path(url)


def _check_ref_syntax(ref: str) -> None:
    if not ref or ref.startswith("-") or any(c.isspace() or ord(c) < 32 for c in ref):
        raise GitError(
            f"invalid git ref {ref!r}: give a branch, tag or commit id (no spaces, "
            "not starting with '-')"
        )


def _check_url(url: str) -> None:
    if not url or url.startswith("-"):
        raise GitError(f"invalid git URL {url!r}: give a repository path or URL")


def _local_git_dir(path: Path, url: str, timeout: float = GIT_TIMEOUT_S) -> Path:
    if not path.exists():
        raise GitError(f"repository {url} not found: give the path or URL of a git repository")
    probe = _git(["rev-parse", "--git-dir"], cwd=path, timeout=timeout)
    if probe.returncode != 0:
        raise GitError(f"{url} is not a git repository: give the path of a git repository")
    return path


def resolve_ref(url: str, ref: str, *, timeout_s: float = GIT_TIMEOUT_S) -> str:
    """The full commit id that ``ref`` (branch, tag, full or short commit id, or
    any revision git accepts for a local repository) names in the repository at
    ``url``. Annotated tags are peeled to their commit. Raises :class:`GitError`
    when the repository or ref does not exist, naming both, or when one git
    command takes longer than ``timeout_s`` seconds."""
    _check_url(url)
    _check_ref_syntax(ref)
    path = _local_path(url)
    if path is not None:
        repo = _local_git_dir(path, url, timeout_s)
        result = _git(
            ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo, timeout=timeout_s
        )
        if result.returncode != 0 or not is_commit_id(result.stdout.strip()):
            raise GitError(
                f"ref {ref!r} not found in {url}: give an existing branch, tag or commit"
            )
        return result.stdout.strip()
    return _resolve_remote(url, ref, timeout_s)


def _resolve_remote(url: str, ref: str, timeout: float = GIT_TIMEOUT_S) -> str:
    listing = _git(["ls-remote", "--", url], timeout=timeout)
    if listing.returncode != 0:
        raise GitError(
            f"cannot read repository {url}: {_last_line(listing.stderr) or 'git ls-remote failed'}"
            " -- check the URL and that it needs no credentials"
        )
    refs: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        sha, _, name = line.partition("\t")
        refs[name.strip()] = sha.strip()
    # Git's own order: exact, tag (peeled when annotated), branch.
    for name in (ref, f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
        if name in refs:
            return refs[name]
    if _SHORT_ID.fullmatch(ref):
        return _fetch_and_resolve(url, ref.lower(), timeout)
    raise GitError(f"ref {ref!r} not found in {url}: give an existing branch, tag or commit")


def _fetch_and_resolve(url: str, commit: str, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="plinth-git-") as tmp:
        _git(["init", "--quiet", "--bare", tmp])
        if is_commit_id(commit):
            fetched = _git(
                ["fetch", "--quiet", "--depth", "1", "--", url, commit], cwd=tmp, timeout=timeout
            )
        else:  # a short id: everything but the file contents, then ask git
            fetched = _git(
                ["fetch", "--quiet", "--filter=blob:none", "--", url, "+refs/*:refs/remotes/x/*"],
                cwd=tmp,
                timeout=timeout,
            )
        if fetched.returncode == 0:
            result = _git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=tmp)
            if result.returncode == 0 and is_commit_id(result.stdout.strip()):
                return result.stdout.strip()
    raise GitError(f"commit {commit!r} not found in {url}: give an existing branch, tag or commit")


def checkout(url: str, commit: str, dest: Path, *, timeout_s: float = GIT_TIMEOUT_S) -> None:
    """Write the tree of ``commit`` (a full id, see :func:`resolve_ref`) of the
    repository at ``url`` into ``dest``, without a ``.git`` directory.

    ``dest`` must not exist or be an empty directory; the files appear all at once
    (checked out beside ``dest``, then renamed). Submodules are not included.
    Raises :class:`GitError` for an unknown repository or commit, or when one git
    command takes longer than ``timeout_s`` seconds.
    """
    _check_url(url)
    if not is_commit_id(commit):
        raise GitError(
            f"{commit!r} is not a full commit id: resolve the ref with resolve_ref() first"
        )
    path = _local_path(url)
    source = os.fspath(_local_git_dir(path, url, timeout_s).resolve()) if path else url
    with (
        staged_directory(dest) as work,
        tempfile.TemporaryDirectory(prefix="plinth-git-") as git_dir,
    ):
        _git(["init", "--quiet", "--bare", git_dir])
        fetched = _git(
            ["fetch", "--quiet", "--depth", "1", "--", source, commit],
            cwd=git_dir,
            timeout=timeout_s,
        )
        if fetched.returncode != 0:
            raise GitError(
                f"commit {commit} not found in {url}: "
                f"{_last_line(fetched.stderr) or 'git fetch failed'}"
            )
        done = _git(
            [
                f"--git-dir={git_dir}",
                f"--work-tree={work}",
                "-c",
                "core.autocrlf=false",
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "--quiet",
                "--force",
                "--detach",
                commit,
            ],
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise GitError(f"cannot check out {commit} from {url}: {_last_line(done.stderr)}")
