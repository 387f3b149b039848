"""Jobs end to end: the real ``plinth`` executable against a real server subprocess.

Covers issue 2's Done-when 2 (a member made with `plinth user create` runs a
job with --code whose roles have 2 and 1 replicas; `plinth job logs` shows
every replica; `submit --wait` exit codes) and the CLI side of Done-when 7.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from plinth.cli.local_server import LocalServer
from plinth.client import Client

from ._helpers import ADMIN_TOKEN, REPO, Team, make_team, plinth, plinth_json

HELLO = REPO / "examples" / "hello"


def write_spec(tmp_path: Path, body: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def wait_for_state(server: LocalServer, job_id: str, states: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    with Client(server.url, ADMIN_TOKEN) as client:
        while True:
            job = dict(client.jobs.get(job_id))
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, f"job {job_id} stayed {job['state']}"
            time.sleep(0.1)


def test_member_runs_hello_with_code_and_sees_every_replica(team: Team) -> None:
    submitted = plinth(
        [
            "job",
            "submit",
            str(HELLO / "job.yaml"),
            "--code",
            str(HELLO),
            "--param",
            "greeting=bonjour",
            "--wait",
            "-o",
            "json",
        ],
        team.env,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["state"] == "succeeded"
    assert job["group"] == team.group and job["user"] == team.user
    assert job["code"]["kind"] == "file" and len(job["code"]["sha256"]) == 64

    logs = plinth(["job", "logs", job["id"]], team.env)
    assert logs.returncode == 0, logs.stderr
    out = logs.stdout
    for me in ("ps-0", "worker-0", "worker-1"):
        role, replica = me.split("-")
        assert f"[{me}] {me}: I am role {role} replica {replica}" in out
    assert "[ps-0] ps-0: role worker is at 127.0.0.1:" in out
    assert "[worker-1] worker-1: role ps is at 127.0.0.1:" in out
    assert "[ps-0] ps-0: received 'bonjour from worker-0'" in out
    assert "[worker-1] worker-1: ps answered 'bonjour worker-1, this is ps-0'" in out

    # On a finished job, --follow prints the same and returns once every log is complete.
    followed = plinth(["job", "logs", job["id"], "--follow"], team.env)
    assert followed.returncode == 0 and followed.stdout == out

    one = plinth(["job", "logs", job["id"], "--role", "worker", "--replica", "1"], team.env)
    assert one.returncode == 0
    assert one.stdout.startswith("worker-1: I am role worker replica 1")
    assert "ps-0:" not in one.stdout

    listed = plinth_json(["job", "list"], team.env)
    assert [j["id"] for j in listed] == [job["id"]]
    table = plinth(["job", "list"], team.env)
    assert job["id"] in table.stdout and "succeeded" in table.stdout
    got = plinth_json(["job", "get", job["id"]], team.env)
    assert got["id"] == job["id"] and got["spec"]["params"]["greeting"] == "bonjour"
    events = plinth_json(["job", "events", job["id"]], team.env)
    assert events[-1]["type"] == "succeeded"
    replicas = plinth_json(["job", "replicas", job["id"]], team.env)
    assert sorted((r["role"], r["replica"]) for r in replicas) == [
        ("ps", 0),
        ("worker", 0),
        ("worker", 1),
    ]


def test_follow_streams_prefixed_lines_and_upload_is_relative_to_spec(team: Team) -> None:
    # The spec's own `code: {upload: .}` is resolved against the spec file, not the cwd.
    result = plinth(["job", "submit", str(HELLO / "job.yaml"), "--follow"], team.env, cwd=Path("/"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[worker-0] worker-0: ps answered 'hello worker-0, this is ps-0'" in result.stdout
    assert "[ps-0] ps-0: greeted all 2 workers" in result.stdout
    assert "succeeded" in result.stdout.splitlines()[-1]


def test_wait_exits_nonzero_when_the_job_fails(team: Team, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: fails
        roles:
          main:
            replicas: 1
            resources: {cpu: 0.1, memory: 32Mi}
            command: [python, -c, "import sys; print('about to fail'); sys.exit(3)"]
        """,
    )
    result = plinth(["job", "submit", str(spec), "--wait"], team.env)
    assert result.returncode == 1
    assert "failed" in result.stdout
    as_json = plinth(["job", "submit", str(spec), "--wait", "-o", "json"], team.env)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["state"] == "failed"
    logs = plinth(["job", "logs", json.loads(as_json.stdout)["id"]], team.env)
    assert "[main-0] about to fail" in logs.stdout


def test_retries_are_marked_in_logs(team: Team, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: retried
        retries: 1
        roles:
          main:
            replicas: 1
            resources: {cpu: 0.1, memory: 32Mi}
            command: [python, -c, "import os, sys; print('attempt', os.environ.get('PLINTH_ATTEMPT')); sys.exit(1)"]
        """,
    )
    result = plinth(["job", "submit", str(spec), "--follow", "-o", "json"], team.env, timeout=180)
    assert result.returncode == 1
    job = json.loads(result.stdout)  # with -o json the logs went to stderr
    assert job["state"] == "failed"
    assert "[main-0] attempt 0" in result.stderr
    assert "[main-0 attempt 1] attempt 1" in result.stderr
    logs = plinth(["job", "logs", job["id"]], team.env)
    assert "[main-0] attempt 0" in logs.stdout and "[main-0 attempt 1] attempt 1" in logs.stdout
    latest = plinth(["job", "logs", job["id"], "--role", "main", "--replica", "0"], team.env)
    assert latest.stdout == "attempt 1\n"
    second = plinth(
        ["job", "logs", job["id"], "--role", "main", "--replica", "0", "--attempt", "1"], team.env
    )
    assert second.stdout.strip() == "attempt 1"


def test_cancel_and_rerun(server: LocalServer, team: Team, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: sleeper
        roles:
          main:
            replicas: 1
            resources: {cpu: 0.1, memory: 32Mi}
            command: [python, -c, "import time; print('sleeping', flush=True); time.sleep(600)"]
        """,
    )
    job = plinth_json(["job", "submit", str(spec)], team.env)
    assert job["state"] in ("pending", "admitted", "running")
    wait_for_state(server, job["id"], {"running"})
    cancelled = plinth(["job", "cancel", job["id"]], team.env)
    assert cancelled.returncode == 0, cancelled.stderr
    waited = plinth(["job", "wait", job["id"], "-o", "json"], team.env)
    assert waited.returncode == 1
    assert json.loads(waited.stdout)["state"] == "cancelled"
    assert "cancelled" in [e["type"] for e in plinth_json(["job", "events", job["id"]], team.env)]
    again = plinth(["job", "cancel", job["id"], "-o", "json"], team.env)
    assert again.returncode == 0 and json.loads(again.stdout)["state"] == "cancelled"

    rerun = plinth_json(["job", "rerun", job["id"]], team.env)
    assert rerun["id"] != job["id"] and rerun["spec"]["roles"] == job["spec"]["roles"]
    assert plinth(["job", "cancel", rerun["id"]], team.env).returncode == 0


def test_members_cannot_touch_other_groups_jobs(
    server: LocalServer, admin_env: dict[str, str], tmp_path: Path
) -> None:
    a = make_team(server, admin_env, "alpha")
    b = make_team(server, admin_env, "beta")
    spec = write_spec(
        tmp_path,
        """\
        name: private
        roles:
          main:
            replicas: 1
            resources: {cpu: 0.1, memory: 32Mi}
            command: [python, -c, "import time; print('secret', flush=True); time.sleep(600)"]
        """,
    )
    job = plinth_json(["job", "submit", str(spec)], b.env)
    wait_for_state(server, job["id"], {"running"})

    assert job["id"] not in [j["id"] for j in plinth_json(["job", "list"], a.env)]
    for args in (
        ["job", "get", job["id"]],
        ["job", "logs", job["id"]],
        ["job", "events", job["id"]],
        ["job", "cancel", job["id"]],
        ["job", "rerun", job["id"]],
    ):
        result = plinth(args, a.env)
        assert result.returncode == 1, args
        assert result.stderr.startswith("Error: ") and "HTTP 404" in result.stderr, args
        assert "secret" not in result.stdout
    assert plinth_json(["job", "get", job["id"]], b.env)["state"] == "running"
    assert plinth_json(["job", "cancel", job["id"]], b.env)["id"] == job["id"]


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_requests_without_a_valid_token_get_401(server: LocalServer, token: str | None) -> None:
    result = plinth(["job", "list"], server.client_env(token))
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr and "PLINTH_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_side_validation_names_the_field(team: Team, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: bad
        roles:
          main: {replicas: 0, resources: {cpu: 1, memory: 32Mi}, command: [python, -V]}
        """,
    )
    result = plinth(["job", "submit", str(spec)], team.env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: the server rejected job spec '{spec}'")
    assert "replicas" in result.stderr
    assert "Traceback" not in result.stderr
    assert all(j["name"] != "bad" for j in plinth_json(["job", "list"], team.env))


def test_bad_yaml_spec_is_a_clear_error(team: Team, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "name: [oops\n")
    result = plinth(["job", "submit", str(spec)], team.env)
    assert result.returncode == 2
    assert "is not valid YAML at line" in result.stderr


def test_git_code_from_a_local_repository_records_the_commit(team: Team, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "main.py").write_text("print('from git')\n")
    git_env = {
        **team.env,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *args], cwd=repo, env=git_env, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    spec = write_spec(
        tmp_path,
        """\
        name: from-git
        roles:
          main: {replicas: 1, resources: {cpu: 0.1, memory: 32Mi}, command: [python, main.py]}
        """,
    )
    # A relative --git path is resolved against the current directory, not the server's.
    result = plinth(
        ["job", "submit", str(spec), "--git", "repo", "--ref", "main", "--wait", "-o", "json"],
        team.env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    job = json.loads(result.stdout)
    assert job["code"]["kind"] == "git" and job["code"]["commit"] == head
    assert (
        plinth(["job", "logs", job["id"], "--role", "main", "--replica", "0"], team.env).stdout
        == "from git\n"
    )
