"""Migration 0005 (presets: templates, job metrics) on SQLite and PostgreSQL: it keeps
earlier data, the new tables round-trip, and it downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from plinth.store.db import Database
from plinth.store.migrate import current_revision, upgrade
from plinth.store.models import JobMetric, Template, TemplateVersion, Workload

from ._migrations import run, seed_0001


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
        seed_0001(db)
        run(db, command.upgrade, "0005")
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
        run(db, command.downgrade, "0002")
        assert current_revision(db.engine) == "0002"
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM workloads")).scalar_one() == "job-1"
        run(db, command.upgrade, "0005")
        assert current_revision(db.engine) == "0005"
    finally:
        db.dispose()
