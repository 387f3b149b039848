"""Migration 0005 (presets: templates, job metrics) on SQLite and PostgreSQL: it keeps
earlier data, the new tables round-trip, and it downgrades cleanly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from plinth.store.db import Database
from plinth.store.migrate import alembic_config, current_revision, upgrade
from plinth.store.models import JobMetric, Template, TemplateVersion, Workload


def _run(db: Database, action: Callable, revision: str) -> None:
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        action(cfg, revision)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_0005_keeps_data_and_round_trips(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path / 'p.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_schemas")())  # fmt: skip
    db = Database(url)
    try:
        upgrade(db.engine, "0002")
        now = datetime(2026, 1, 1)
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO groups (name, quota, created_at) "
                              "VALUES ('g', '{\"cpu\": 2}', :t)"), {"t": now})  # fmt: skip
            conn.execute(text("INSERT INTO users (name, group_id, admin, created_at) "
                              "VALUES ('u', 1, false, :t)"), {"t": now})  # fmt: skip
            conn.execute(text(
                "INSERT INTO workloads (id, kind, name, group_id, user_id, state, reason, spec,"
                " demand, attempt, failures, retries, max_runtime_s, created_at, queued_at)"
                " VALUES ('job-1', 'job', 'j', 1, 1, 'pending', '', '{}', '{}', 0, 0, 0, 60,"
                " :t, :t)"), {"t": now})  # fmt: skip
        _run(db, command.upgrade, "0005")
        assert current_revision(db.engine) == "0005"
        with db.session() as s:
            assert s.get(Workload, "job-1").template is None
            t = Template(name="t", group_id=None, latest_version=1, created_by="admin")
            s.add(t)
            s.flush()
            s.add(TemplateVersion(template_id=t.id, version=1, document={"spec": {}},
                                  created_by="admin"))  # fmt: skip
            s.add_all(JobMetric(workload_id="job-1", role="worker", replica=0, step=i,
                                time=1.5, values={"loss": 0.5}) for i in range(3))  # fmt: skip
        with db.read() as s:
            ids = [m.id for m in s.query(JobMetric).order_by(JobMetric.id)]
            assert len(ids) == 3 and ids == sorted(ids)
            assert s.query(TemplateVersion).one().document == {"spec": {}}
        _run(db, command.downgrade, "0002")
        assert current_revision(db.engine) == "0002"
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM workloads")).scalar_one() == "job-1"
        _run(db, command.upgrade, "0005")
        assert current_revision(db.engine) == "0005"
    finally:
        db.dispose()
