"""Migration 0004 (security) on SQLite: existing tokens stay valid and unnamed,
existing uploads are granted to their uploader's group, and it round-trips."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from alembic import command
from sqlalchemy import text

from plinth.store.db import Database
from plinth.store.migrate import current_revision, upgrade

from ._migrations import run as _run


def test_0004_keeps_tokens_and_grants_old_uploads(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        upgrade(db.engine, "0002")
        now = datetime(2026, 1, 1)
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO groups (name, quota, created_at) "
                              "VALUES ('g', '{}', :t)"), {"t": now})  # fmt: skip
            conn.execute(text("INSERT INTO users (name, group_id, admin, created_at) "
                              "VALUES ('u', 1, false, :t)"), {"t": now})  # fmt: skip
            conn.execute(text("INSERT INTO tokens (token_hash, user_id, created_at) "
                              "VALUES ('h', 1, :t)"), {"t": now})  # fmt: skip
            conn.execute(text("INSERT INTO files (sha256, size, user_id, created_at) "
                              "VALUES (:s, 10, 1, :t)"), {"s": "a" * 64, "t": now})  # fmt: skip
        upgrade(db.engine, "0004")
        with db.engine.connect() as conn:
            assert conn.execute(text(
                "SELECT name, expires_at, revoked_at FROM tokens")).one() == (None, None, None)
            assert conn.execute(text("SELECT disabled FROM users")).scalar_one() in (0, False)
            assert conn.execute(text(
                "SELECT sha256, group_id, user_id FROM file_grants")).one() == ("a" * 64, 1, 1)
        _run(db, command.downgrade, "0002")
        assert current_revision(db.engine) == "0002"
        upgrade(db.engine, "0004")
        assert current_revision(db.engine) == "0004"
    finally:
        db.dispose()
