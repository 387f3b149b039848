"""The store on SQLite and PostgreSQL: migrations, round trips, constraints, concurrency."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from plinth.store.db import Database
from plinth.store.migrate import current_revision, head_revision, upgrade
from plinth.store.models import Base, Event, Group, Replica, Token, User, Workload


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'plinth.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    database = Database(url)
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _group_user(db: Database) -> tuple[int, int]:
    with db.session() as s:
        g = Group(
            name=_name("g"),
            quota={"cpu": 1, "memory": 1, "gpu": 0},
            borrow_limit=None,
            lend_limit=None,
        )
        s.add(g)
        s.flush()
        u = User(name=_name("u"), group_id=g.id, admin=False, cap=None)
        s.add(u)
        s.flush()
        return g.id, u.id


def test_migrations_reach_head_and_match_the_models(db: Database) -> None:
    assert current_revision(db.engine) == head_revision() is not None
    upgrade(db.engine)  # a second run is a no-op
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    db.dispose()


def test_workload_replica_event_round_trip_keeps_utc_times_and_json(db: Database) -> None:
    gid, uid = _group_user(db)
    t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    wid = _name("job")
    with db.session() as s:
        s.add(Workload(
            id=wid, kind="job", name="n", group_id=gid, user_id=uid, state="pending", reason="r",
            spec={"roles": {"w": {"command": ["python", "-c", "print('é')"]}}, "params": {"x": [1, 2]}},
            code={"kind": "git", "url": "/r", "ref": "main", "commit": "a" * 40},
            demand={"cpu": 0.5, "memory": 512, "gpu": 0}, attempt=0, failures=0, retries=2,
            max_runtime_s=10.0, created_at=t, queued_at=t,
        ))  # fmt: skip
        s.flush()
        s.add(Replica(
            workload_id=wid, role="w", replica=0, attempt=0, state="running", node="n1",
            host="127.0.0.1", port=1234, gpus=[0, 1], resources={"cpu": 0.5, "memory": 512, "gpu": 2},
            handle={"pid": 1}, log_path="/x", stop_requested=False,
        ))  # fmt: skip
        s.add(Event(workload_id=wid, type="submitted", reason="because", time=t, data={"k": 1}))
    with db.read() as s:
        w = s.get(Workload, wid)
        assert w is not None
        assert w.created_at == t and w.created_at.tzinfo is not None
        assert w.spec["roles"]["w"]["command"][2] == "print('é')"
        assert w.code["commit"] == "a" * 40
        r = s.scalars(select(Replica).where(Replica.workload_id == wid)).one()
        assert r.gpus == [0, 1] and r.handle == {"pid": 1}
        e = s.scalars(select(Event).where(Event.workload_id == wid)).one()
        assert (e.type, e.reason, e.data) == ("submitted", "because", {"k": 1})


def test_unique_names_and_foreign_keys_are_enforced(db: Database) -> None:
    gid, _ = _group_user(db)
    with db.session() as s:
        name = s.get(Group, gid).name
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Group(name=name, quota={}, borrow_limit=None, lend_limit=None))
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Token(token_hash="x" * 64, user_id=10**9))
    with db.read() as s:  # nothing half-written
        assert s.scalar(select(func.count()).select_from(Group).where(Group.name == name)) == 1


def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    gid, uid = _group_user(db)
    wid = _name("job")
    with pytest.raises(RuntimeError), db.session() as s:
        now = datetime.now(UTC)
        s.add(Workload(
            id=wid, kind="job", name="n", group_id=gid, user_id=uid, state="pending", reason="",
            spec={}, code=None, demand={}, attempt=0, failures=0, retries=0, max_runtime_s=1.0,
            created_at=now, queued_at=now,
        ))  # fmt: skip
        s.flush()
        raise RuntimeError("boom")
    with db.read() as s:
        assert s.get(Workload, wid) is None


def test_concurrent_read_then_write_transactions_do_not_fail(db: Database) -> None:
    """Writers that read first must queue (BEGIN IMMEDIATE on SQLite), not error out."""
    gid, uid = _group_user(db)
    errors: list[BaseException] = []
    prefix = _name("c")

    def writer(k: int) -> None:
        try:
            for i in range(15):
                with db.session() as s:
                    s.scalar(select(func.count()).select_from(Workload))  # read ...
                    now = datetime.now(UTC) + timedelta(microseconds=i)
                    s.add(Workload(  # ... then write
                        id=f"{prefix}-{k}-{i}", kind="job", name="n", group_id=gid, user_id=uid,
                        state="pending", reason="", spec={}, code=None, demand={}, attempt=0,
                        failures=0, retries=0, max_runtime_s=1.0, created_at=now, queued_at=now,
                    ))  # fmt: skip
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as s:
        n = s.scalar(
            select(func.count()).select_from(Workload).where(Workload.id.like(f"{prefix}-%"))
        )
    assert n == 60


@pytest.mark.postgres
def test_postgres_tests_run_in_their_own_schema(pg_url: str) -> None:
    db = Database(pg_url)
    with db.engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
    db.dispose()
    assert schema is not None and schema.startswith("plinth_test_")


def test_table_versions_count_committed_writes_only(db: Database) -> None:
    tables = ("groups", "users", "workloads")
    before = db.versions.get(tables)
    with db.read() as s:
        s.execute(select(Group)).all()
    assert db.versions.get(tables) == before  # reads count nothing
    with db.session() as s:
        s.add(Group(name=f"v-{secrets.token_hex(3)}", quota={"cpu": 1}))
    after = db.versions.get(tables)
    assert after == (before[0] + 1, before[1], before[2])  # the written table, once
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(Group(name=f"v-{secrets.token_hex(3)}", quota={"cpu": 1}))
        s.flush()
        raise RuntimeError("rolled back")
    assert db.versions.get(tables) == after  # a rolled-back write counts nothing
