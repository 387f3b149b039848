"""Engine and sessions for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every transaction that may
write starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads and then
writes fails at once with "database is locked" when another connection committed
meanwhile (busy_timeout does not apply to that case), which under concurrent
submissions would surface as errors. Read-only sessions (``readonly=True``) use a
plain deferred BEGIN and never block writers (WAL).

``Database.versions`` counts, per table, the commits that wrote to it (in this
process): a reader that notes the counters before it reads can later tell whether
what it read is still current, without reading again (the control loop's cached
snapshot). A counter moves after the COMMIT, when the connection returns to the pool,
and, on SQLite, before this process's write lock is given back: whoever holds the
write lock and sees unchanged counters knows nothing was committed since.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from threading import Lock

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import UpdateBase

__all__ = ["Database", "TableVersions", "make_engine"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
_HOLDS_WRITE_LOCK = "plinth_write_lock"  # connection-record info key
_WROTE = "plinth_wrote"  # connection-record info key: tables written in this transaction


class TableVersions:
    """Per-table counters of committed writes (see the module docstring)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = Lock()

    def get(self, tables: tuple[str, ...]) -> tuple[int, ...]:
        counts = self._counts
        return tuple(counts.get(t, 0) for t in tables)

    def bump(self, tables: set[str]) -> None:
        with self._lock:
            for t in tables:
                self._counts[t] = self._counts.get(t, 0) + 1


def _track_writes(engine: Engine, versions: TableVersions) -> None:
    """Note the tables each transaction writes; count them once it committed."""

    @event.listens_for(engine, "after_execute")
    def _after_execute(conn, clause, *_args) -> None:
        if isinstance(clause, UpdateBase):
            name = getattr(clause.table, "name", None)
            conn.connection.info.setdefault(_WROTE, set()).add(name)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn) -> None:
        if conn.invalidated:
            # The database went away (e.g. PostgreSQL restarted): touching the dead
            # connection here would raise PendingRollbackError instead of the real
            # OperationalError; check-in forgets its notes anyway (_count_committed).
            return
        conn.connection.info.pop(_WROTE, None)

    @event.listens_for(engine, "commit")
    def _on_commit(conn) -> None:
        # Counted at check-in, after the COMMIT: counting before it would let a reader
        # see the new counter with the old rows.
        wrote = conn.connection.info.pop(_WROTE, None)
        if wrote:
            conn.connection.info["plinth_committed"] = wrote


def _count_committed(record, versions: TableVersions) -> None:
    if record is None:
        return
    record.info.pop(_WROTE, None)  # left by a transaction that never committed
    wrote = record.info.pop("plinth_committed", None)
    if wrote:
        versions.bump(wrote)


def make_engine(url: str, versions: TableVersions | None = None) -> Engine:
    """Create an engine for `url` with Plinth's connection settings.

    SQLite: WAL, synchronous=NORMAL (durable across process crashes, which is what a
    kill -9 of the server is), foreign keys on, busy_timeout 30 s.
    PostgreSQL: psycopg 3 (``postgresql+psycopg://``); a ``?options=-csearch_path=X``
    query selects a schema (the tests isolate themselves that way).
    ``versions``: counters to keep (see ``TableVersions``).
    """
    versions = versions if versions is not None else TableVersions()
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=16,
            max_overflow=32,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            # Take transaction control away from the sqlite3 module: we emit BEGIN ourselves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.close()

        # Writers of this process queue on a Python lock before BEGIN IMMEDIATE: SQLite's
        # own busy handler polls with sleeps of 1, 2, 5, 10 ... 100 ms, so a submit that
        # meets the admission transaction would otherwise sleep far longer than the
        # transaction lasts. The lock is taken at BEGIN (not when a session opens, so
        # work before the first statement, e.g. resolving a git ref, holds nothing) and
        # given back when the connection returns to the pool, i.e. after its COMMIT or
        # ROLLBACK. Other processes still meet SQLite's lock as before.
        write_lock = Lock()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            readonly = conn.get_execution_options().get("plinth_readonly", False)
            if not readonly:
                info = conn.connection.info  # the pool record's, shared with checkin
                if not info.get(_HOLDS_WRITE_LOCK):
                    # Bounded like busy_timeout: a stuck holder degrades to SQLite's
                    # own locking rather than a deadlock.
                    info[_HOLDS_WRITE_LOCK] = write_lock.acquire(
                        timeout=SQLITE_BUSY_TIMEOUT_MS / 1000
                    )
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "checkin")
        def _on_checkin(_dbapi_conn, record) -> None:
            _count_committed(record, versions)  # before the lock goes: see TableVersions
            if record is not None and record.info.pop(_HOLDS_WRITE_LOCK, False):
                write_lock.release()

        _track_writes(engine, versions)
        return engine
    engine = create_engine(url, pool_size=16, max_overflow=32, pool_pre_ping=True)

    @event.listens_for(engine, "checkin")
    def _on_pg_checkin(_dbapi_conn, record) -> None:
        _count_committed(record, versions)

    _track_writes(engine, versions)
    return engine


class Database:
    """An engine plus session factories. ``session()`` for writes, ``read()`` for reads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.versions = TableVersions()
        self.engine = make_engine(url, self.versions)
        self.is_sqlite = url.startswith("sqlite")
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(
            self.engine.execution_options(plinth_readonly=True), expire_on_commit=False
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on an exception."""
        with self._write() as s, s.begin():
            yield s

    def holds_write_lock(self, s: Session) -> bool:
        """SQLite: whether session `s` took this process's write lock at its BEGIN (it
        goes on without it after a timeout); always True elsewhere."""
        if not self.is_sqlite:
            return True
        return bool(s.connection().connection.info.get(_HOLDS_WRITE_LOCK))

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (never blocks writers on SQLite)."""
        with self._read() as s, s.begin():
            yield s

    def dispose(self) -> None:
        self.engine.dispose()
