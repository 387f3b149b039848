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
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from plinth.artifacts._staging import staged_directory

__all__ = ["GitError", "checkout", "is_commit_id", "resolve_ref"]

#: Seconds a resolution or a checkout may take by default (all its git commands).
GIT_TIMEOUT_S = 120.0
#: Transports git may use unless the caller says otherwise (``code.git_protocols``).
DEFAULT_PROTOCOLS: tuple[str, ...] = ("https", "ssh", "file")
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
    # Neither the user's nor the system's config may re-enable a transport.
    env.pop("GIT_ALLOW_PROTOCOL", None)
    env.pop("GIT_PROTOCOL_FROM_USER", None)
    return env


def _protocol_flags(protocols: Sequence[str]) -> list[str]:
    """``protocol.allow=never`` and ``protocol.<name>.allow=always`` for the allow-list:
    everything else (``ext::`` runs a command, ``fd::`` hangs, ``git://`` is
    unauthenticated) stays off, whatever the user's git config says."""
    flags = ["-c", "protocol.allow=never"]
    for name in protocols:
        flags += ["-c", f"protocol.{name}.allow=always"]
    return flags


def _git(
    args: list[str],
    cwd: str | Path | None = None,
    timeout: float = GIT_TIMEOUT_S,
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
) -> subprocess.CompletedProcess[str]:
    """Run git; never raises for a non-zero status (callers word the error).

    Git runs in a process group of its own; on timeout the whole group is killed
    (``git-remote-https``, ``ssh``, ...), so no helper outlives the timeout."""
    if timeout <= 0:
        raise _timeout_error(args, 0.0)
    try:
        proc = subprocess.Popen(
            ["git", *_protocol_flags(protocols), *args],
            cwd=cwd,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise GitError("git is not installed on the server: install git to use git code") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise _timeout_error(args, timeout) from None
    except BaseException:
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL git's whole process group and reap git."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _timeout_error(args: list[str], timeout: float) -> GitError:
    return GitError(
        f"git {args[0] if args else ''} took more than {timeout:g}s; check that the "
        "repository is reachable and does not need credentials"
    )


class _Deadline:
    """One time budget shared by the git commands of one operation (seconds)."""

    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return self._end - time.monotonic()


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


def _local_git_dir(path: Path, url: str, run: _Runner) -> Path:
    if not path.exists():
        raise GitError(f"repository {url} not found: give the path or URL of a git repository")
    probe = run(["rev-parse", "--git-dir"], cwd=path)
    if probe.returncode != 0:
        raise GitError(f"{url} is not a git repository: give the path of a git repository")
    return path


class _Runner:
    """Runs the git commands of one operation under one deadline and allow-list."""

    def __init__(self, timeout_s: float, protocols: Sequence[str]) -> None:
        self.deadline = _Deadline(timeout_s)
        self.protocols = tuple(protocols)

    def __call__(self, args: list[str], cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        left = self.deadline.left()
        if left <= 0:
            raise _timeout_error(args, self.deadline.total)
        try:
            return _git(args, cwd=cwd, timeout=left, protocols=self.protocols)
        except GitError as e:
            if "took more than" in str(e):  # word it with the whole budget
                raise _timeout_error(args, self.deadline.total) from None
            raise


def resolve_ref(
    url: str,
    ref: str,
    *,
    timeout_s: float = GIT_TIMEOUT_S,
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
) -> str:
    """The full commit id that ``ref`` (branch, tag, full or short commit id, or
    any revision git accepts for a local repository) names in the repository at
    ``url``. Annotated tags are peeled to their commit. Raises :class:`GitError`
    when the repository or ref does not exist, naming both, or when the git
    commands take longer than ``timeout_s`` seconds in all (then git's whole process
    group is killed). Git may use the transports in ``protocols`` only."""
    _check_url(url)
    _check_ref_syntax(ref)
    run = _Runner(timeout_s, protocols)
    path = _local_path(url)
    if path is not None:
        repo = _local_git_dir(path, url, run)
        result = run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo)
        if result.returncode != 0 or not is_commit_id(result.stdout.strip()):
            raise GitError(
                f"ref {ref!r} not found in {url}: give an existing branch, tag or commit"
            )
        return result.stdout.strip()
    return _resolve_remote(url, ref, run)


def _resolve_remote(url: str, ref: str, run: _Runner | None = None) -> str:
    run = run or _Runner(GIT_TIMEOUT_S, DEFAULT_PROTOCOLS)
    listing = run(["ls-remote", "--", url])
    if listing.returncode != 0:
        raise GitError(
            f"cannot read repository {url}: {_last_line(listing.stderr) or 'git ls-remote failed'}"
            " -- check the URL, that its protocol is allowed (code.git_protocols) and that it"
            " needs no credentials"
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
        return _fetch_and_resolve(url, ref.lower(), run)
    raise GitError(f"ref {ref!r} not found in {url}: give an existing branch, tag or commit")


def _fetch_and_resolve(url: str, commit: str, run: _Runner) -> str:
    with tempfile.TemporaryDirectory(prefix="plinth-git-") as tmp:
        run(["init", "--quiet", "--bare", tmp])
        if is_commit_id(commit):
            fetched = run(["fetch", "--quiet", "--depth", "1", "--", url, commit], cwd=tmp)
        else:  # a short id: everything but the file contents, then ask git
            fetched = run(
                ["fetch", "--quiet", "--filter=blob:none", "--", url, "+refs/*:refs/remotes/x/*"],
                cwd=tmp,
            )
        if fetched.returncode == 0:
            result = run(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=tmp)
            if result.returncode == 0 and is_commit_id(result.stdout.strip()):
                return result.stdout.strip()
    raise GitError(f"commit {commit!r} not found in {url}: give an existing branch, tag or commit")


def checkout(
    url: str,
    commit: str,
    dest: Path,
    *,
    timeout_s: float = GIT_TIMEOUT_S,
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
) -> None:
    """Write the tree of ``commit`` (a full id, see :func:`resolve_ref`) of the
    repository at ``url`` into ``dest``, without a ``.git`` directory.

    ``dest`` must not exist or be an empty directory; the files appear all at once
    (checked out beside ``dest``, then renamed). Submodules are not included.
    Raises :class:`GitError` for an unknown repository or commit, or when the git
    commands take longer than ``timeout_s`` seconds in all (then git's whole process
    group is killed). Git may use the transports in ``protocols`` only.
    """
    _check_url(url)
    if not is_commit_id(commit):
        raise GitError(
            f"{commit!r} is not a full commit id: resolve the ref with resolve_ref() first"
        )
    run = _Runner(timeout_s, protocols)
    path = _local_path(url)
    source = os.fspath(_local_git_dir(path, url, run).resolve()) if path else url
    with (
        staged_directory(dest) as work,
        tempfile.TemporaryDirectory(prefix="plinth-git-") as git_dir,
    ):
        run(["init", "--quiet", "--bare", git_dir])
        fetched = run(["fetch", "--quiet", "--depth", "1", "--", source, commit], cwd=git_dir)
        if fetched.returncode != 0:
            raise GitError(
                f"commit {commit} not found in {url}: "
                f"{_last_line(fetched.stderr) or 'git fetch failed'}"
            )
        done = run(
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
            ]
        )
        if done.returncode != 0:
            raise GitError(f"cannot check out {commit} from {url}: {_last_line(done.stderr)}")
