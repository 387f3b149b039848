"""Migration 0003 (policy): caps keep only the resources an admin wrote (all-zero rows
stay zero), expansions gain revoke columns, reclaim holds get a table; it downgrades."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from plinth.store.db import Database
from plinth.store.migrate import alembic_config, current_revision, upgrade

_MIGRATION = "plinth.store.migrations.versions.0003_policy"


def test_only_written_keeps_deliberate_zeros() -> None:
    import importlib

    only_written = importlib.import_module(_MIGRATION).only_written
    assert only_written({"cpu": 1, "memory": 0, "gpu": 0}) == {"cpu": 1}
    assert only_written({"cpu": 0, "memory": 0, "gpu": 0}) == {"cpu": 0, "memory": 0, "gpu": 0}
    assert only_written({"cpu": 0.0, "memory": 2048, "gpu": 0}) == {"memory": 2048}
    assert only_written(None) is None


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_0003_rewrites_caps_and_round_trips(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path / 'p.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_schemas")())  # fmt: skip
    db = Database(url)
    try:
        upgrade(db.engine, "0002")
        now = datetime(2026, 1, 1)
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO groups (name, quota, borrow_limit, lend_limit, created_at) VALUES"
                " ('g', '{\"cpu\": 2}', '{\"cpu\": 2, \"memory\": 0, \"gpu\": 0}',"
                " '{\"cpu\": 0, \"memory\": 0, \"gpu\": 0}', :t)"), {"t": now})  # fmt: skip
            conn.execute(text(
                "INSERT INTO users (name, group_id, admin, cap, created_at) VALUES"
                " ('u', 1, false, '{\"cpu\": 1, \"memory\": 0, \"gpu\": 0}', :t)"),
                {"t": now})  # fmt: skip
        upgrade(db.engine, "0003")
        assert current_revision(db.engine) == "0003"
        with db.engine.connect() as conn:
            import json

            def load(v):
                return v if isinstance(v, dict) else json.loads(v)

            b, lend = conn.execute(text("SELECT borrow_limit, lend_limit FROM groups")).one()
            assert load(b) == {"cpu": 2}  # memory and gpu: uncapped now
            assert load(lend) == {"cpu": 0, "memory": 0, "gpu": 0}  # lends nothing, as before
            cap = conn.execute(text("SELECT cap FROM users")).scalar_one()
            assert load(cap) == {"cpu": 1}
            assert conn.execute(text("SELECT count(*) FROM reclaim_holds")).scalar_one() == 0
        cfg = alembic_config()
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        assert current_revision(db.engine) == "0002"
        upgrade(db.engine, "0003")
        assert current_revision(db.engine) == "0003"
    finally:
        db.dispose()
