"""Code uploads: content addressing, refusals naming the problem, nothing written."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from .conftest import Plinth, role, wait_for


def targz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _stored_files(plinth: Plinth) -> list[str]:
    root = plinth.home / "files"
    return [f for _, _, fs in os.walk(root) for f in fs] if root.exists() else []


def _post(plinth: Plinth, h: dict, data: bytes):
    return plinth.c.post(
        "/api/v1/files", headers={**h, "Content-Type": "application/gzip"}, content=data
    )


def test_upload_is_content_addressed_and_runs_as_code(plinth: Plinth) -> None:
    h, _ = plinth.member()
    data = targz(
        [file("train.py", b"print(open('data/x.txt').read())\n"), file("data/x.txt", b"payload")]
    )
    r = _post(plinth, h, data)
    assert r.status_code == 201, r.text
    sha = r.json()["sha256"]
    assert r.json()["size"] == len(data)
    again = _post(plinth, h, data)
    assert again.status_code == 200 and again.json()["sha256"] == sha
    assert plinth.c.get(f"/api/v1/files/{sha}", headers=h).json()["size"] == len(data)
    job = plinth.submit(
        h, {"main": {**role(""), "command": ["python", "train.py"]}}, code={"file": sha}
    )
    done = plinth.wait(h, job["id"])
    assert done["state"] == "succeeded" and done["code"] == {
        "kind": "file",
        "sha256": sha,
        "url": None,
        "ref": None,
        "commit": None,
    }
    assert plinth.log(h, job["id"], "main", 0) == "payload\n"


BOMB = targz([file("zeros.bin", b"\0" * (2 * 1024 * 1024))])  # 2 MiB unpacked, a few KiB packed


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (targz([file("../evil.py", b"x")]), 400, ".."),
        (targz([file("/etc/evil", b"x")]), 400, "/etc/evil"),
        (targz([file("ok.py", b"x"), link("out", "../../etc/passwd")]), 400, "out"),
        (targz([link("hard", "/etc/passwd", tarfile.LNKTYPE)]), 400, "hard"),
        (BOMB, 400, "zeros.bin"),
        (gzip.compress(os.urandom(80 * 1024)), 413, "cap"),
        (b"this is not a tarball", 400, "archive"),
    ],
    ids=[
        "dotdot",
        "absolute",
        "symlink-escape",
        "hardlink-escape",
        "bomb",
        "packed-cap",
        "garbage",
    ],
)
def test_unsafe_uploads_are_refused_and_nothing_is_written(
    plinth: Plinth, data: bytes, status: int, words: str
) -> None:
    h, _ = plinth.member()
    assert len(BOMB) < 64 * 1024
    r = _post(plinth, h, data)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"], r.json()
    assert _stored_files(plinth) == []


def test_oversized_body_is_refused_by_content_length_and_while_streaming(plinth: Plinth) -> None:
    h, _ = plinth.member()

    def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(100):
            yield b"x" * 4096

    r = plinth.c.post("/api/v1/files", headers=h, content=chunks())
    assert r.status_code == 413 and "cap" in r.json()["detail"]
    assert _stored_files(plinth) == []


def test_a_job_with_code_admitted_at_submit_is_started_by_the_loop(plinth: Plinth) -> None:
    # Extracting an upload (or checking out a commit) may take long: the submit request
    # admits the job but leaves its start to the control loop's thread.
    r = _post(plinth, plinth.admin, targz([file("main.py", b"print('from the upload')\n")]))
    sha = r.json()["sha256"]
    loop = plinth.c.app.state.plinth.loop
    wait_for(loop.snapshot_is_current, what="the loop to read its snapshot ahead")
    job = plinth.submit(
        plinth.admin, {"main": {**role(""), "command": ["python", "main.py"]}}, code={"file": sha}
    )
    assert job["state"] == "admitted"
    assert plinth.wait(plinth.admin, job["id"])["state"] == "succeeded"
    assert plinth.log(plinth.admin, job["id"], "main", 0) == "from the upload\n"
