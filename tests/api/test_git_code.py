"""Code from git: the ref is resolved to a commit at submit, recorded, and reruns use it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import Plinth


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(repo), "PATH": "/usr/bin:/bin"},
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
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
