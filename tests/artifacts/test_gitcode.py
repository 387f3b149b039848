"""Resolving git refs and checking out exact commits, on real repositories in tmp_path."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from plinth.artifacts import gitcode
from plinth.artifacts.gitcode import GitError, checkout, is_commit_id, resolve_ref


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


@dataclass
class Repo:
    path: Path
    first: str  # commit with train.py v1 and old.py; tagged v1 (light) and r1 (annotated)
    second: str  # train.py v2, old.py removed; head of main
    feature: str  # head of branch `feature`

    @property
    def url(self) -> str:
        return self.path.as_uri()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    (path / "train.py").write_text("v1\n")
    (path / "old.py").write_text("old\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "one")
    first = git(path, "rev-parse", "HEAD")
    git(path, "tag", "v1")
    git(path, "tag", "-a", "r1", "-m", "release 1")
    (path / "train.py").write_text("v2\n")
    git(path, "rm", "--quiet", "old.py")
    git(path, "commit", "--quiet", "-am", "two")
    second = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "-b", "feature")
    (path / "feature.py").write_text("f\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "feature")
    feature = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "main")
    return Repo(path, first, second, feature)


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_resolve_branches_tags_and_commits(repo: Repo, as_url: bool) -> None:
    url = repo.url if as_url else str(repo.path)
    assert resolve_ref(url, "main") == repo.second
    assert resolve_ref(url, "feature") == repo.feature
    assert resolve_ref(url, "v1") == repo.first
    assert resolve_ref(url, "r1") == repo.first  # annotated tag, peeled to its commit
    assert resolve_ref(url, repo.first) == repo.first
    assert resolve_ref(url, repo.first[:8]) == repo.first
    assert resolve_ref(url, "HEAD") == repo.second


def test_resolve_through_ls_remote_as_for_a_remote(repo: Repo) -> None:
    # The code path used for https/ssh remotes, exercised on a file:// URL.
    assert gitcode._resolve_remote(repo.url, "main") == repo.second
    assert gitcode._resolve_remote(repo.url, "r1") == repo.first
    assert gitcode._resolve_remote(repo.url, "refs/heads/feature") == repo.feature
    assert gitcode._resolve_remote(repo.url, repo.first) == repo.first
    assert gitcode._resolve_remote(repo.url, repo.feature[:10]) == repo.feature
    with pytest.raises(GitError, match=r"ref 'nope' not found in file://"):
        gitcode._resolve_remote(repo.url, "nope")
    with pytest.raises(GitError, match=r"commit 'deadbeef' not found"):
        gitcode._resolve_remote(repo.url, "deadbeef")
    with pytest.raises(GitError, match=r"cannot read repository"):
        gitcode._resolve_remote(repo.url + "-missing", "main")


def test_a_recorded_commit_survives_new_commits_on_the_branch(repo: Repo, tmp_path: Path) -> None:
    recorded = resolve_ref(str(repo.path), "main")
    (repo.path / "train.py").write_text("v3\n")
    git(repo.path, "commit", "--quiet", "-am", "three")
    assert resolve_ref(str(repo.path), "main") != recorded
    checkout(str(repo.path), recorded, tmp_path / "rerun")
    assert (tmp_path / "rerun" / "train.py").read_text() == "v2\n"


@pytest.mark.parametrize(
    ("url_of", "ref", "message"),
    [
        (lambda r: str(r.path), "nope", r"ref 'nope' not found in .*repo: give an existing"),
        (lambda r: str(r.path), "0" * 40, r"ref '0{40}' not found"),
        (lambda r: str(r.path.parent / "absent"), "main", r"repository .*absent not found"),
        (lambda r: str(r.path / ".."), "main", r"is not a git repository"),
        (lambda r: str(r.path), "-upload-pack=evil", r"invalid git ref"),
        (lambda r: str(r.path), "two words", r"invalid git ref"),
        (lambda r: "--upload-pack=evil", "main", r"invalid git URL"),
    ],
)
def test_resolve_errors_say_what_to_fix(repo: Repo, url_of, ref: str, message: str) -> None:
    with pytest.raises(GitError, match=message):
        resolve_ref(url_of(repo), ref)


def test_checkout_writes_exactly_that_tree(repo: Repo, tmp_path: Path) -> None:
    old = tmp_path / "old"
    checkout(str(repo.path), repo.first, old)
    assert sorted(p.name for p in old.iterdir()) == ["old.py", "train.py"]  # no .git
    assert (old / "train.py").read_text() == "v1\n"

    new = tmp_path / "new"
    checkout(repo.url, repo.feature, new)
    assert sorted(p.name for p in new.iterdir()) == ["feature.py", "train.py"]
    assert (new / "train.py").read_text() == "v2\n"


def test_checkout_into_an_empty_directory(repo: Repo, tmp_path: Path) -> None:
    dest = tmp_path / "code"
    dest.mkdir()
    checkout(str(repo.path), repo.second, dest)
    assert (dest / "train.py").read_text() == "v2\n"
    with pytest.raises(FileExistsError):
        checkout(str(repo.path), repo.second, dest)


def test_checkout_failures_leave_nothing_behind(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(GitError, match=r"commit a{40} not found in"):
        checkout(str(repo.path), "a" * 40, out / "code")
    with pytest.raises(GitError, match=r"not a full commit id: resolve the ref"):
        checkout(str(repo.path), "main", out / "code")
    with pytest.raises(GitError, match=r"not found"):
        checkout(str(tmp_path / "absent"), repo.first, out / "code")
    assert list(out.iterdir()) == []


def test_git_never_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "1")
    env = gitcode._git_env()
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"]


def test_is_commit_id() -> None:
    assert is_commit_id("a" * 40) and is_commit_id("0" * 64)
    assert not is_commit_id("a" * 39) and not is_commit_id("A" * 40) and not is_commit_id("main")


def test_the_ext_transport_never_runs_a_command(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(GitError, match=r"cannot read repository"):
        resolve_ref(f"ext::sh -c touch% {marker}", "main")
    assert not marker.exists()


def test_a_git_command_over_its_timeout_is_a_clear_error(repo: Repo) -> None:
    with pytest.raises(GitError, match=r"took more than 1e-09s; check that the repository"):
        resolve_ref(str(repo.path), "main", timeout_s=1e-9)
