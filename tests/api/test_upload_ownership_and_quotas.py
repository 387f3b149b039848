"""Uploads belong to the uploading group; per-user and total upload quotas (413)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import TEST_CONFIG, Plinth, make_plinth, role
from .test_uploads import _post, file, targz


def test_another_groups_archive_cannot_be_seen_or_run_by_its_sha256(plinth: Plinth) -> None:
    owner, _ = plinth.member()
    other, _ = plinth.member()
    data = targz([file("x.py", b"print(1)")])
    sha = _post(plinth, owner, data).json()["sha256"]
    assert plinth.c.get(f"/api/v1/files/{sha}", headers=other).status_code == 404
    body = {"name": "steal", "code": {"file": sha}, "roles": {"main": role("")}}
    r = plinth.c.post("/api/v1/jobs", headers=other, json=body)
    assert r.status_code == 422 and "no uploaded file" in r.json()["detail"], r.text
    # The same bytes uploaded by the other group: its own grant, the same file.
    r = _post(plinth, other, data)
    assert r.status_code == 201 and r.json()["sha256"] == sha
    assert plinth.c.post("/api/v1/jobs", headers=other, json=body).status_code == 201
    assert plinth.c.get(f"/api/v1/files/{sha}", headers=plinth.admin).status_code == 200


@pytest.fixture
def small_quotas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    uploads = {**TEST_CONFIG["uploads"], "max_per_user": 3000, "max_total": 5000}
    client, home = make_plinth(tmp_path, monkeypatch, uploads=uploads)
    with client:
        yield Plinth(client, home)


def _blob(n: int) -> bytes:
    import os

    return targz([file("noise.bin", os.urandom(n))])  # random: gzip cannot shrink it


def test_per_user_and_total_upload_quotas_are_413_naming_the_cap(small_quotas: Plinth) -> None:
    p = small_quotas
    alice, group = p.member()
    first = _blob(1500)
    assert _post(p, alice, first).status_code == 201
    assert _post(p, alice, first).status_code == 200  # the same bytes again: no new usage
    r = _post(p, alice, _blob(1500))
    assert r.status_code == 413, r.text
    assert "per-user cap" in r.json()["detail"] and "uploads.max_per_user" in r.json()["detail"]
    bob, _ = p.member(group)
    carol, _ = p.member()
    assert _post(p, bob, _blob(1500)).status_code == 201
    r = _post(p, carol, _blob(2500))
    assert r.status_code == 413 and "total cap" in r.json()["detail"], r.text
    stored = [f for f in (p.home / "files").rglob("*.tar.gz")]
    assert len(stored) == 2, "a refused upload writes nothing"


@pytest.fixture
def big_uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    uploads = {"max_packed": "8Mi", "max_unpacked": "16Mi", "max_files": 10}
    client, home = make_plinth(tmp_path, monkeypatch, uploads=uploads)
    with client:
        yield Plinth(client, home)


def test_a_full_artifact_disk_is_a_clear_507_and_stores_nothing(big_uploads: Plinth) -> None:
    """The disk is "full" through RLIMIT_FSIZE (no mount rights needed): any write past
    2 MiB by this process fails with EFBIG, as a full disk fails with ENOSPC."""
    import resource

    p = big_uploads
    h, _ = p.member()
    data = _blob(3 * 1024 * 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, hard))
    try:
        r = _post(p, h, data)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert r.status_code == 507, r.text
    assert "storage is full" in r.json()["detail"] and "nothing was stored" in r.json()["detail"]
    assert list((p.home / "files").rglob("*")) == [d for d in (p.home / "files").rglob("*")
                                                   if d.is_dir()]  # fmt: skip
    r = _post(p, h, data)  # room again: the same upload now works, nothing half-written
    assert r.status_code == 201, r.text
    assert p.c.get(f"/api/v1/files/{r.json()['sha256']}", headers=h).json()["size"] == len(data)
