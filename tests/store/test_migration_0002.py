"""Migration 0002 (quota scheduler) on SQLite and PostgreSQL: it upgrades a database
holding 0001 data without losing it, fills the new columns' defaults, and downgrades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from plinth.store.db import Database
from plinth.store.migrate import current_revision, upgrade
from plinth.store.models import QuotaExpansion, Reservation, UsageRecord

from ._migrations import run, seed_0001


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_0002_keeps_0001_data_and_round_trips(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path / 'p.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_schemas")())  # fmt: skip
    db = Database(url)
    try:
        upgrade(db.engine, "0001")
        seed_0001(db)
        upgrade(db.engine, "0002")
        assert current_revision(db.engine) == "0002"
        with db.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT priority, preemptions, preempted_at FROM workloads")).one()  # fmt: skip
            assert tuple(row) == ("normal", 0, None)
            assert conn.execute(text("SELECT max_job, max_runtime_s FROM groups")).one() == (
                None, None)  # fmt: skip
        t = datetime.now(UTC)
        with db.session() as s:
            s.add(QuotaExpansion(group_id=1, add={"gpu": 2}, start=t, end=t + timedelta(hours=1),
                                 reason="r", granted_by="admin"))  # fmt: skip
            s.add(Reservation(id="rsv-1", user_id=1, resources={"cpu": 1}, start=t,
                              end=t + timedelta(hours=1), created_by="admin"))  # fmt: skip
            s.add(UsageRecord(group_id=1, start=t, end=t, resources={"cpu": 1}))
        with db.read() as s:
            e = s.query(QuotaExpansion).one()
            assert e.add == {"gpu": 2} and e.end - e.start == timedelta(hours=1)
            assert e.start.tzinfo is not None
        run(db, command.downgrade, "0001")
        assert current_revision(db.engine) == "0001"
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM workloads")).scalar_one() == "job-1"
        upgrade(db.engine, "0002")
        assert current_revision(db.engine) == "0002"
    finally:
        db.dispose()
