"""Alembic environment: runs on the connection handed in by plinth.store.migrate."""

from alembic import context

from plinth.store.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite needs batch mode
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # pragma: no cover - Plinth always migrates online
    raise SystemExit("offline migrations are not supported; the server migrates at start")
run_migrations_online()
