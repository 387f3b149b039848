"""Retention removes what it should and nothing else (issue 8, Done when 4)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from plinth.services.retention import WorkloadInfo, plan_sweep
from plinth.services.workdirs import file_path, workload_dir
from plinth.store.models import File, Workload, utcnow

from .conftest import TEST_CONFIG, Plinth, make_plinth, role
from .test_uploads import _post, file, targz


@pytest.fixture
def short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client, home = make_plinth(
        tmp_path, monkeypatch, retention={"workloads": "1h", "uploads": "1h"}
    )
    with client:
        yield Plinth(client, home)


def _age(p: Plinth, model, key, ident: str, column: str) -> None:
    db = p.c.app.state.plinth.db
    with db.session() as s:
        s.execute(update(model).where(key == ident).values(
            {column: utcnow() - timedelta(hours=2)}))  # fmt: skip


def test_a_sweep_removes_old_finished_files_and_unused_uploads_only(short: Plinth) -> None:
    p = short
    h, _ = p.member()
    used = _post(p, h, targz([file("a.py", b"print('used')")])).json()["sha256"]
    old_unused = _post(p, h, targz([file("b.py", b"print('old')")])).json()["sha256"]
    new_unused = _post(p, h, targz([file("c.py", b"print('new')")])).json()["sha256"]
    old = p.submit(h, {"main": role("print('old')")}, code={"file": old_unused})
    recent = p.submit(h, {"main": role("print('recent')")})
    running = p.submit(h, {"main": role("import time; time.sleep(60)")}, code={"file": used})
    for j in (old, recent):
        assert p.wait(h, j["id"])["state"] == "succeeded"
    p.wait(h, running["id"], {"running"})
    for sha in (used, old_unused):  # new_unused stays recent
        _age(p, File, File.sha256, sha, "created_at")
    _age(p, Workload, Workload.id, old["id"], "finished_at")
    _age(p, Workload, Workload.id, old["id"], "created_at")
    stranger = p.home / "workloads" / "not-a-workload-of-ours"
    stranger.mkdir(parents=True)

    r = p.c.post("/api/v1/admin/gc", headers=p.admin)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["workloads"] == [old["id"]]
    assert report["uploads"] == [old_unused] and report["bytes_freed"] > 0
    assert report["code_versions"] == [f"file-{old_unused}"]
    assert not workload_dir(p.home, old["id"]).exists()
    for j in (recent, running):
        assert workload_dir(p.home, j["id"]).exists()
    assert not file_path(p.home, old_unused).exists()
    for sha in (used, new_unused):
        assert file_path(p.home, sha).exists()
    assert (p.home / "code" / f"file-{used}").is_dir()
    assert stranger.is_dir()
    # The records stay: the old job still answers, its log is simply empty now.
    assert p.job(h, old["id"])["state"] == "succeeded"
    assert p.c.get(f"/api/v1/files/{old_unused}", headers=h).status_code == 404
    assert p.c.post("/api/v1/admin/gc", headers=h).status_code == 403
    again = p.c.post("/api/v1/admin/gc", headers=p.admin).json()
    assert again["workloads"] == again["uploads"] == []


def test_plan_sweep_is_pure_and_keeps_whatever_is_in_use() -> None:
    from plinth.config import RetentionConfig

    now = utcnow()
    old, new = now - timedelta(days=10), now - timedelta(minutes=1)
    cfg = RetentionConfig(workloads="1d", uploads="1d")
    gone, files, codes = plan_sweep(
        [WorkloadInfo("done-old", True, old, False), WorkloadInfo("done-new", True, new, False),
         WorkloadInfo("still-stopping", True, old, True), WorkloadInfo("live", False, None, False)],
        [("s-old", old), ("s-used", old), ("s-new", new)],
        [("file-s-old", new), ("file-s-used", old), ("git-x-1", old), ("git-y-2", new)],
        {"file-s-used"}, now, cfg,
    )  # fmt: skip
    assert gone == ["done-old"]
    assert files == ["s-old"]
    assert codes == ["file-s-old", "git-x-1"]


def test_retention_config_is_validated() -> None:
    from plinth.config import ServerConfig

    with pytest.raises(ValueError, match="retention"):
        ServerConfig.model_validate({**TEST_CONFIG, "retention": {"workloads": "soon"}})
