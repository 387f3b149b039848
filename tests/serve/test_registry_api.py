"""The registry under /api/v1/models: versions copied with lineage (from an upload or a
job), validation at registration, aliases with history, deltas in sequence only."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from api.conftest import ADMIN_TOKEN, PY, make_plinth

pytestmark = pytest.mark.slow


def _targz(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=root.name)
    return buf.getvalue()


@pytest.fixture
def api(tmp_path, monkeypatch):
    client, home = make_plinth(tmp_path, monkeypatch, uploads={
        "max_packed": 16 * 1024 * 1024, "max_unpacked": 64 * 1024 * 1024, "max_files": 100})
    with client:
        yield client, home


def _member(c):
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert c.post("/api/v1/groups", json={"name": "recs", "quota": {"cpu": 4}},
                  headers=admin).status_code == 201
    r = c.post("/api/v1/users", json={"name": "ann", "group": "recs"}, headers=admin)
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _upload(c, h, root: Path) -> str:
    r = c.post("/api/v1/files", content=_targz(root),
               headers={**h, "Content-Type": "application/gzip"})
    assert r.status_code in (200, 201), r.text
    return r.json()["sha256"]


def test_register_alias_history_and_deltas(api, trained, tmp_path):
    c, home = api
    h = _member(c)
    # v1 from an uploaded archive
    r = c.post("/api/v1/models/ctr/versions", json={"file": _upload(c, h, trained.v1)},
               headers=h)
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert v1["version"] == 1 and len(v1["lineage"]["schema_hash"]) == 64
    assert (home / v1["path"] / "model.json").exists()

    # v2 from a job's working directory: the job prints its workload token for the test
    # and keeps running (a finished job's token no longer works)
    job = c.post("/api/v1/jobs", headers=h, json={"name": "train", "roles": {"main": {
        "resources": {"cpu": 0.1, "memory": "64Mi"},
        "command": [PY, "-c", ("import os, time; print(os.environ['PLINTH_TOKEN'], "
                              "flush=True); time.sleep(120)")]}},
        "params": {"config": {"data": {"train": "s3://bucket/clicks"}}}}).json()
    from _waiting import wait_for

    log = wait_for(lambda: c.get(f"/api/v1/jobs/{job['id']}/logs/main/0",
                                 headers=h).text.strip(), 30, "the job's token")
    workdir = home / "workloads" / job["id"] / "code"
    shutil.copytree(trained.v2, workdir / "out" / "model")
    for d in trained.deltas[:2]:
        shutil.copytree(d, workdir / "out" / "deltas" / d.name)
    r = c.post("/api/v1/models/ctr/versions", headers=h,
               json={"job": job["id"], "path": "out/model"})
    assert r.status_code == 201, r.text
    lineage = r.json()["lineage"]
    assert (r.json()["version"], lineage["job"]) == (2, job["id"])
    assert lineage["data"] == {"train": "s3://bucket/clicks"}
    assert lineage["schema_hash"] == v1["lineage"]["schema_hash"]

    # aliases move atomically and keep their history
    for version in (1, 2, 1):
        r = c.put("/api/v1/models/ctr/aliases/production", json={"version": version},
                  headers=h)
        assert r.status_code == 200 and r.json()["version"] == version, r.text
    assert c.get("/api/v1/models/ctr/versions/production", headers=h).json()["version"] == 1
    hist = c.get("/api/v1/models/ctr/history", headers=h).json()
    assert [(m["from_version"], m["to_version"]) for m in hist] == [(None, 1), (1, 2), (2, 1)]
    assert c.put("/api/v1/models/ctr/aliases/production", json={"version": 7},
                 headers=h).status_code == 404
    model = c.get("/api/v1/models/ctr", headers=h).json()
    assert model["latest_version"] == 2 and model["aliases"] == {"production": 1}

    # deltas: the job's workload token publishes from its own directory, in order only
    wl = {"Authorization": f"Bearer {log.splitlines()[-1]}"}
    r = c.post("/api/v1/models/ctr/versions/2/deltas", headers=wl,
               json={"seq": 1, "path": f"out/deltas/{trained.deltas[0].name}"})
    assert r.status_code == 201, r.text
    r = c.post("/api/v1/models/ctr/versions/2/deltas", headers=wl,
               json={"seq": 3, "path": f"out/deltas/{trained.deltas[1].name}"})
    assert r.status_code == 409 and "publish delta 2 next" in r.json()["detail"]
    r = c.post("/api/v1/models/ctr/versions/2/deltas", headers=h,
               json={"seq": 2, "job": job["id"], "path": f"out/deltas/{trained.deltas[1].name}"})
    assert r.status_code == 201, r.text
    deltas = c.get("/api/v1/models/ctr/versions/2/deltas?after=0", headers=h).json()
    assert [d["seq"] for d in deltas] == [1, 2]
    assert all((home / d["path"] / "delta.json").exists() for d in deltas)
    c.post(f"/api/v1/jobs/{job['id']}/cancel", headers=h)
    wait_for(lambda: c.get(f"/api/v1/jobs/{job['id']}", headers=h).json()["state"]
             == "cancelled", 30, "the job to stop")


def test_broken_or_foreign_package_is_refused_and_changes_nothing(api, trained, tmp_path):
    c, home = api
    h = _member(c)
    assert c.post("/api/v1/models/ctr/versions", json={"file": _upload(c, h, trained.v1)},
                  headers=h).status_code == 201
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.json").write_text(json.dumps({"format": "onnx"}))
    broken = tmp_path / "broken"
    shutil.copytree(trained.v1, broken)
    (broken / "dense.pt").write_bytes(b"not torch")
    for pkg, says in ((foreign, "format 'onnx'"), (broken, "does not load")):
        r = c.post("/api/v1/models/ctr/versions", json={"file": _upload(c, h, pkg)},
                   headers=h)
        assert r.status_code == 422 and says in r.json()["detail"], r.text
    assert [v["version"] for v in c.get("/api/v1/models/ctr/versions",
                                        headers=h).json()] == [1]
    assert sorted(p.name for p in (home / "models" / "ctr").iterdir()) == ["v1"]
    # Another group neither sees the model nor may take its name.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    c.post("/api/v1/groups", json={"name": "other", "quota": {"cpu": 1}}, headers=admin)
    tok = c.post("/api/v1/users", json={"name": "bob", "group": "other"}, headers=admin)
    bob = {"Authorization": f"Bearer {tok.json()['token']}"}
    assert c.get("/api/v1/models/ctr", headers=bob).status_code == 404
    assert c.get("/api/v1/models", headers=bob).json() == []
    r = c.post("/api/v1/models/ctr/versions", json={"file": _upload(c, bob, trained.v1)},
               headers=bob)
    assert r.status_code == 409 and "taken by another group" in r.json()["detail"]
