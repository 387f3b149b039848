"""The Python SDK against a real server: errors, uploads, logs, waiting."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from plinth.cli.local_server import LocalServer
from plinth.client import (
    AuthError,
    Client,
    ConflictError,
    ConnectionError,
    NotFoundError,
    ValidationError,
    WaitTimeoutError,
)

from ._helpers import REPO, Team, unique


def spec(name: str, code: str, *, replicas: int = 1, retries: int = 0) -> dict:
    return {
        "name": name,
        "retries": retries,
        "roles": {
            "main": {
                "replicas": replicas,
                "resources": {"cpu": 0.1, "memory": "32Mi"},
                "command": ["python", "-c", code],
            }
        },
    }


def test_errors_map_to_the_hierarchy(server: LocalServer, admin: Client, team: Team) -> None:
    with pytest.raises(AuthError) as info, Client(server.url, "wrong-token") as anonymous:
        anonymous.jobs.list()
    assert info.value.status == 401
    with Client(server.url, team.token) as member, pytest.raises(AuthError) as info:
        member.groups.create(unique("x"), {"cpu": 1})
    assert info.value.status == 403
    with pytest.raises(NotFoundError):
        admin.jobs.get("no-such-job")
    with pytest.raises(ConflictError):
        admin.groups.create(team.group, {"cpu": 1})
    with pytest.raises(ValidationError) as info:
        admin.jobs.submit(spec("Bad Name!", "pass"))
    assert info.value.status == 422 and "name" in info.value.message


def test_connection_error_names_the_url() -> None:
    from plinth.cli.local_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "t") as client, pytest.raises(ConnectionError) as info:
        client.whoami()
    assert url in str(info.value) and "plinth server" in str(info.value)


def test_upload_is_content_addressed(team: Team, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print('hi')\n")
    with Client(team.env["PLINTH_URL"], team.token) as client:
        first = client.files.upload(tmp_path)
        second = client.files.upload(tmp_path)
        assert first["sha256"] == second["sha256"] and len(first["sha256"]) == 64
        assert client.files.get(first["sha256"])["size"] == first["size"]


def test_unsafe_archive_is_refused(team: Team) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with (
        Client(team.env["PLINTH_URL"], team.token) as client,
        pytest.raises(ValidationError) as err,
    ):
        client.files.upload_bytes(buffer.getvalue())
    assert err.value.status == 400 and ".." in err.value.message


def test_follow_logs_covers_every_replica(team: Team) -> None:
    with Client(team.env["PLINTH_URL"], team.token) as client:
        job = client.jobs.submit(
            spec(
                unique("echo"),
                "import os\nfor i in range(3): print(os.environ['PLINTH_REPLICA'], i)",
                replicas=2,
            )
        )
        lines = list(client.jobs.follow_logs(job["id"], timeout=120))
        assert client.jobs.wait(job["id"], timeout=60)["state"] == "succeeded"
    by_replica = {r: [x.text for x in lines if x.replica == r] for r in (0, 1)}
    assert by_replica == {0: ["0 0", "0 1", "0 2"], 1: ["1 0", "1 1", "1 2"]}
    assert {(x.role, x.attempt) for x in lines} == {("main", 0)}


def test_logs_offsets_and_completion(team: Team) -> None:
    with Client(team.env["PLINTH_URL"], team.token) as client:
        job = client.jobs.submit(spec(unique("chunk"), "print('abcdef')"))
        client.jobs.wait(job["id"], timeout=60)
        whole = client.jobs.logs(job["id"], "main", 0)
        assert whole.text == "abcdef\n" and whole.complete and whole.offset == 7
        tail = client.jobs.logs(job["id"], "main", 0, offset=3)
        assert tail.data == b"def\n" and tail.offset == 7


def test_wait_timeout_leaves_the_job_running(team: Team) -> None:
    with Client(team.env["PLINTH_URL"], team.token) as client:
        job = client.jobs.submit(spec(unique("slow"), "import time; time.sleep(600)"))
        with pytest.raises(WaitTimeoutError):
            client.jobs.wait(job["id"], timeout=0.5)
        assert client.jobs.cancel(job["id"])["id"] == job["id"]
        assert client.jobs.wait(job["id"], timeout=60)["state"] == "cancelled"


def test_example_spec_is_valid_for_the_server(team: Team) -> None:
    """examples/hello/job.yaml, with its code uploaded, is accepted as is."""
    from plinth.cli._spec import load_spec, prepare_spec

    path = REPO / "examples" / "hello" / "job.yaml"
    prepared = prepare_spec(load_spec(path), path.parent)
    assert prepared.upload_dir == path.parent
    with Client(team.env["PLINTH_URL"], team.token) as client:
        prepared.spec["code"] = {"file": client.files.upload(prepared.upload_dir)["sha256"]}
        job = client.jobs.submit(prepared.spec)
        assert client.jobs.wait(job["id"], timeout=120)["state"] == "succeeded"
