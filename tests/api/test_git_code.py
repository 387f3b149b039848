"""Code from git: the ref is resolved to a commit at submit, recorded, and reruns use it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Plinth, _cancel_all, make_plinth


@pytest.fixture
def plinth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plinth]:
    """The app with members allowed to use local repositories under `tmp_path`/ok."""
    (tmp_path / "ok").mkdir()
    client, home = make_plinth(
        tmp_path, monkeypatch, code={"git_local_roots": [str(tmp_path / "ok")]}
    )
    with client:
        p = Plinth(client, home)
        try:
            yield p
        finally:
            _cancel_all(p)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(repo), "PATH": "/usr/bin:/bin"},
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "ok" / "repo"
    r.mkdir(parents=True)
    git(r, "init", "-q", "-b", "main")
    (r / "version.txt").write_text("v1\n")
    (r / "run.py").write_text("print('running', open('version.txt').read().strip())\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "v1")
    return r


def test_branch_is_recorded_as_commit_and_rerun_uses_it(plinth: Plinth, repo: Path) -> None:
    h, _ = plinth.member()
    v1 = git(repo, "rev-parse", "HEAD")
    spec_role = {"resources": {"cpu": 0.1}, "command": ["python", "run.py"]}
    job = plinth.submit(h, {"main": spec_role}, code={"git": str(repo), "ref": "main"})
    assert job["code"] == {
        "kind": "git",
        "url": str(repo),
        "ref": "main",
        "commit": v1,
        "sha256": None,
    }
    assert v1[:12] in plinth.events(h, job["id"])[0]["reason"]
    assert plinth.wait(h, job["id"])["state"] == "succeeded"
    assert plinth.log(h, job["id"], "main", 0) == "running v1\n"

    (repo / "version.txt").write_text("v2\n")
    git(repo, "commit", "-q", "-am", "v2")
    assert git(repo, "rev-parse", "HEAD") != v1

    r = plinth.c.post(f"/api/v1/jobs/{job['id']}/rerun", headers=h)
    assert r.status_code == 201, r.text
    rerun = r.json()
    assert rerun["id"] != job["id"] and rerun["code"]["commit"] == v1
    assert "rerun of" in plinth.events(h, rerun["id"])[0]["reason"]
    assert plinth.wait(h, rerun["id"])["state"] == "succeeded"
    assert plinth.log(h, rerun["id"], "main", 0) == "running v1\n"

    # a fresh submit at the branch gets the new commit
    fresh = plinth.submit(h, {"main": spec_role}, code={"git": str(repo), "ref": "main"})
    assert fresh["code"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert plinth.wait(h, fresh["id"])["state"] == "succeeded"
    assert plinth.log(h, fresh["id"], "main", 0) == "running v2\n"


def test_unknown_ref_is_refused_at_submit(plinth: Plinth, repo: Path) -> None:
    h, _ = plinth.member()
    r = plinth.c.post(
        "/api/v1/jobs",
        headers=h,
        json={
            "name": "x",
            "code": {"git": str(repo), "ref": "no-such-branch"},
            "roles": {"main": {"command": ["python", "run.py"]}},
        },
    )
    assert r.status_code == 422 and "no-such-branch" in r.json()["detail"]


def _outside_repo(tmp_path: Path) -> Path:
    r = tmp_path / "outside"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "secret.txt").write_text("s\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "s")
    return r


def test_members_may_not_use_local_repositories_outside_the_roots(
    plinth: Plinth, tmp_path: Path, repo: Path
) -> None:
    h, _ = plinth.member()
    outside = _outside_repo(tmp_path)
    spec_role = {"resources": {"cpu": 0.1}, "command": ["true"]}
    # a symlink inside the root pointing outside does not get around the check
    (tmp_path / "ok" / "link").symlink_to(outside)
    for url in (str(outside), f"file://{outside}", str(tmp_path / "ok" / "link"),
                str(tmp_path / "ok" / ".." / "outside")):  # fmt: skip
        r = plinth.c.post("/api/v1/jobs", json={"name": "t", "roles": {"main": spec_role},
                                                "code": {"git": url}}, headers=h)  # fmt: skip
        assert r.status_code == 403, (url, r.text)
        assert "code.git_local_roots" in r.json()["detail"]
    # inside the root: allowed; an admin may use any local repository
    ok = plinth.submit(h, {"main": spec_role}, code={"git": f"file://{repo}"})
    assert ok["code"]["kind"] == "git"
    admin_job = plinth.submit(plinth.admin, {"main": spec_role}, code={"git": str(outside)})
    assert admin_job["code"]["kind"] == "git"


def test_credentials_in_git_urls_are_refused_without_echo(plinth: Plinth) -> None:
    h, _ = plinth.member()
    spec_role = {"resources": {"cpu": 0.1}, "command": ["true"]}
    for url in ("https://alice:s3cr3t-tok@git.example.com/r.git",
                "https://s3cr3t-tok@git.example.com/r.git",
                "ssh://git:s3cr3t-tok@git.example.com/r.git"):  # fmt: skip
        r = plinth.c.post("/api/v1/jobs", json={"name": "t", "roles": {"main": spec_role},
                                                "code": {"git": url}}, headers=h)  # fmt: skip
        assert r.status_code == 422, (url, r.text)
        assert "credential helper" in r.text and "s3cr3t" not in r.text, r.text


def test_stored_credentials_are_redacted_on_output() -> None:
    from plinth.services.specs import redact_url, url_has_credentials

    assert redact_url("https://u:tok@h.example/r.git") == "https://***@h.example/r.git"
    assert redact_url("ssh://git@h.example/r.git") == "ssh://git@h.example/r.git"
    assert redact_url("git@h.example:r.git") == "git@h.example:r.git"
    assert not url_has_credentials("https://h.example/a@b.git")  # '@' in the path only
