"""Helpers of the migration tests: run Alembic commands, seed a database at 0001."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from alembic.config import Config
from sqlalchemy import text

from plinth.store.db import Database
from plinth.store.migrate import alembic_config


def run(db: Database, action: Callable[[Config, str], None], revision: str) -> None:
    """``alembic.command.<action>`` to ``revision`` on ``db``, in one transaction."""
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        action(cfg, revision)


def seed_0001(db: Database) -> None:
    """One group ``g``, user ``u`` and pending job ``job-1``, written with 0001's columns."""
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
