"""Admin bootstrap, reconciliation after a restart, and configuration errors."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from plinth.config import EXECUTOR_NICE_DEFAULT, ConfigError, load_config
from plinth.services.auth import authenticate, bootstrap_admin
from plinth.services.reconcile import reconcile
from plinth.store.db import Database
from plinth.store.migrate import upgrade
from plinth.store.models import Event, Group, Replica, User, Workload

QUOTA = {"cpu": 4.0, "memory": 8192, "gpu": 0}


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(d.engine)
    return d


def test_bootstrap_writes_a_private_token_once(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLINTH_ADMIN_TOKEN", raising=False)
    with db.session() as s:
        token = bootstrap_admin(s, tmp_path, QUOTA)
    path = tmp_path / "admin.token"
    assert token and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with db.session() as s:
        assert bootstrap_admin(s, tmp_path, QUOTA) is None  # not an empty database any more
        p = authenticate(s, token)
        assert (p.user, p.group, p.admin) == ("admin", "default", True)
        assert s.scalars(select(Group.quota)).one() == QUOTA
    assert path.read_text().strip() == token


def test_bootstrap_uses_the_given_token_and_writes_no_file(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLINTH_ADMIN_TOKEN", "plt_given")
    with db.session() as s:
        assert bootstrap_admin(s, tmp_path, QUOTA) == "plt_given"
    assert not (tmp_path / "admin.token").exists()
    with db.read() as s:
        assert authenticate(s, "plt_given").admin


def _workload(s, wid: str, state: str) -> None:
    gid = s.scalars(select(Group.id)).first()
    uid = s.scalars(select(User.id)).first()
    now = datetime.now(UTC)
    s.add(Workload(
        id=wid, kind="job", name="n", group_id=gid, user_id=uid, state=state, reason="",
        spec={}, code=None, demand={}, attempt=0, failures=0, retries=0, max_runtime_s=60.0,
        created_at=now, queued_at=now, admitted_at=now,
    ))  # fmt: skip
    s.flush()


def _replica(s, wid: str, state: str) -> None:
    s.add(Replica(
        workload_id=wid, role="main", replica=0, attempt=0, state=state, node="n", host="h",
        port=1, gpus=[], resources={}, handle=None if state == "launching" else {"x": 1},
        log_path="/x", stop_requested=False,
    ))  # fmt: skip


def test_reconcile_requeues_admitted_and_marks_launching_lost(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLINTH_ADMIN_TOKEN", "t")
    with db.session() as s:
        bootstrap_admin(s, tmp_path, QUOTA)
        _workload(s, "job-a", "admitted")
        _replica(s, "job-a", "launching")
        _workload(s, "job-r", "running")
        _replica(s, "job-r", "running")
    report = reconcile(db)
    assert (report.readopted, report.lost, report.requeued) == (1, 1, 1)
    with db.read() as s:
        a = s.get(Workload, "job-a")
        assert (a.state, a.attempt, a.failures) == ("pending", 1, 0)
        assert "server stopped while starting" in a.reason
        rep = s.scalars(select(Replica).where(Replica.workload_id == "job-a")).one()
        assert rep.state == "lost"
        types = {
            wid: [e.type for e in s.scalars(select(Event).where(Event.workload_id == wid))]
            for wid in ("job-a", "job-r")
        }
    assert types == {"job-a": ["requeued"], "job-r": ["readopted"]}


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("jobs: {grase: 1s}\n")
    with pytest.raises(ConfigError, match=r"jobs\.grase"):
        load_config(bad)
    bad.write_text("nodes: [{name: a, cpu: 1, memory: 4GB}]\n")
    with pytest.raises(ConfigError, match=r"nodes\.0\.memory.*'4Gi'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    good = tmp_path / "g.yaml"
    good.write_text("nodes: [{name: a, cpu: 2, memory: 4Gi, gpu: 1}]\njobs: {grace: 2s}\n")
    cfg = load_config(good)
    assert cfg.nodes is not None and cfg.nodes[0].memory == 4096 and cfg.jobs.grace == 2.0
    assert cfg.executor_nice == EXECUTOR_NICE_DEFAULT


def test_byte_caps_are_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("uploads: {max_packed: 1.5Mi, max_unpacked: 1000}\napi: {max_body: 100k}\n")
    cfg = load_config(path)
    assert cfg.uploads.max_packed == 1536 * 1024  # was rounded up to 2Mi
    assert cfg.uploads.max_unpacked == 1000  # bare numbers are bytes
    assert cfg.api.max_body == 100_000  # was rounded up to a whole MiB
    path.write_text("uploads: {max_packed: '65536'}\n")
    assert load_config(path).uploads.max_packed == 65536


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [("api: {max_body: 1MB}", r"api\.max_body.*'1MB' is not understood.*'512Mi'"),
     ("api: {max_body: 0}", r"api\.max_body.*positive"),
     ("uploads: {max_unpacked: true}", r"uploads\.max_unpacked"),
     ("uploads: {max_packed: -5}", r"uploads\.max_packed")],
)  # fmt: skip
def test_bad_byte_caps_name_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError, match=key):
        load_config(path)


@pytest.mark.parametrize("value", ["-1", "20", "high"])
def test_executor_nice_out_of_range_names_the_key(tmp_path: Path, value: str) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(f"executor_nice: {value}\n")
    with pytest.raises(ConfigError, match=r"executor_nice"):
        load_config(bad)
    bad.write_text("executor_nice: 12\n")
    assert load_config(bad).executor_nice == 12


def test_admin_token_is_written_only_after_commit_and_never_through_a_link(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLINTH_ADMIN_TOKEN", raising=False)
    path = tmp_path / "admin.token"

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.session() as s:
        bootstrap_admin(s, tmp_path, QUOTA)
        s.flush()
        assert not path.exists()  # not before the commit ...
        raise Boom
    assert not path.exists()  # ... and not at all when it rolled back
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    path.symlink_to(victim)  # planted by someone else
    with db.session() as s:
        token = bootstrap_admin(s, tmp_path, QUOTA)
    assert victim.read_text() == "keep\n"
    assert not path.is_symlink() and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".admin")] == []


def test_plinth_home_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plinth.config import plinth_home

    monkeypatch.setenv("PLINTH_HOME", str(tmp_path / "a" / "home"))
    old = os.umask(0o022)
    try:
        home = plinth_home()
    finally:
        os.umask(old)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
