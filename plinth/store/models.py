"""SQLAlchemy 2 models: the platform's durable state.

Tables: groups, users, tokens (hashed), files (content-addressed uploads),
workloads (kind = job | notebook | deployment; one row each), replicas (one row
per role/replica/attempt: every attempt kept), events (every transition, with a
reason). Times are stored as naive UTC and returned timezone-aware.
Resources are stored as JSON ``{"cpu": cores, "memory": MiB, "gpu": devices}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AuditRecord",
    "Base",
    "Event",
    "File",
    "FileGrant",
    "Group",
    "JobMetric",
    "Model",
    "ModelAlias",
    "ModelAliasMove",
    "ModelDelta",
    "ModelVersion",
    "QuotaExpansion",
    "ReclaimHold",
    "Replica",
    "Reservation",
    "Template",
    "TemplateVersion",
    "Token",
    "UsageRecord",
    "User",
    "Workload",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (portable across SQLite and PostgreSQL); returns aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    quota: Mapped[dict[str, Any]]
    borrow_limit: Mapped[dict[str, Any] | None]
    lend_limit: Mapped[dict[str, Any] | None]
    # Admin caps (None: no cap): the largest job (total resources), the longest
    # max_runtime (seconds), the most live workloads one user may have.
    max_job: Mapped[dict[str, Any] | None]
    max_runtime_s: Mapped[float | None] = mapped_column(Float)
    max_workloads_per_user: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    cap: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A disabled user's tokens are revoked and it cannot get new ones; its workloads
    # keep running (disabling stops nothing else).
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Token(Base):
    """An API token, stored as the sha256 of its (high-entropy) plaintext.

    ``workload_id`` set means a token scoped to that workload (given to its replicas);
    it stops working once the workload has finished. ``expires_at`` (None: never) and
    ``revoked_at`` end a token; rows are kept so that listings show what ended when.
    """

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workload_id: Mapped[str | None] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    name: Mapped[str | None] = mapped_column(String(63))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class File(Base):
    """An uploaded code archive, stored at PLINTH_HOME/files/<sha256[:2]>/<sha256>.tar.gz."""

    __tablename__ = "files"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FileGrant(Base):
    """A group that uploaded an archive and so may run it (same bytes uploaded by two
    groups: two grants, one file). A member knowing another group's sha256 cannot
    use that archive."""

    __tablename__ = "file_grants"
    sha256: Mapped[str] = mapped_column(
        ForeignKey("files.sha256", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditRecord(Base):
    """Who changed what and when: quotas, expansions, users, tokens (admins read it)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any] | None]


class Workload(Base):
    """A job, notebook or deployment: what holds resources.

    ``spec`` is the normalised spec as submitted; ``code`` what was resolved at submit
    (``{"kind": "git", "url", "ref", "commit"}`` or ``{"kind": "file", "sha256"}``).
    ``demand`` is the total of all replicas' resources. ``not_before`` holds a retry's
    backoff; ``deadline_at`` the current attempt's max_runtime deadline.
    """

    __tablename__ = "workloads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="job")
    name: Mapped[str] = mapped_column(String(63))
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]]
    code: Mapped[dict[str, Any] | None]
    demand: Mapped[dict[str, Any]]
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # index of the current attempt
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts so far
    retries: Mapped[int] = mapped_column(Integer, default=0)
    max_runtime_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Queue position survives preemption/retry; equals created_at at submit.
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    admitted_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    not_before: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    # Scheduler inputs: the priority class (a name from the server's configuration).
    priority: Mapped[str] = mapped_column(String(32), default="normal")
    # Set when the scheduler preempted the current attempt: its replicas got SIGTERM
    # and it returns to pending (queued_at unchanged) once they have all exited.
    preempted_at: Mapped[datetime | None]
    preemptions: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the job was expanded from a template: {"name", "version", "params"} (the
    # resolved parameter values); ``spec`` then holds the expanded spec it ran.
    template: Mapped[dict[str, Any] | None]


class Replica(Base):
    """One attempt of one replica of one role. ``handle`` is the executor's JSON handle.

    States: launching (row written, process not yet started), running, succeeded,
    failed (non-zero exit), stopped (ended after Plinth asked it to), lost (could not be
    found again, e.g. after a restart).
    """

    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("workload_id", "role", "replica", "attempt"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[str] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(63))
    replica: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    exit_code: Mapped[int | None]
    node: Mapped[str] = mapped_column(String(63))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[list[Any]]
    resources: Mapped[dict[str, Any]]
    handle: Mapped[dict[str, Any] | None]
    log_path: Mapped[str] = mapped_column(Text)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


Index("ix_replicas_workload_attempt", Replica.workload_id, Replica.attempt)


class Event(Base):
    """A transition or notable happening of a workload, with a human-readable reason."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[str] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None]


class QuotaExpansion(Base):
    """Extra quota for a group or a user (exactly one set) during ``[start, end)``.

    Rows are never deleted: expired ones are the history ``plinth quota list`` shows.
    """

    __tablename__ = "quota_expansions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    add: Mapped[dict[str, Any]]
    start: Mapped[datetime]
    end: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A revoked expansion ends at ``revoked_at`` (``end`` is set to it too, so every
    # reader that looks at the window sees it end); who and why are kept.
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(63))
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class ReclaimHold(Base):
    """Capacity freed by a reclaim's victims, held for the claimant until it is admitted
    or gives up (``plinth.scheduler.holds``). ``victims``: ``[{"id": workload id,
    "usage": {node: {"cpu", "memory", "gpu"}}}]`` as each held when preempted;
    ``plan``: ``{node: {"cpu", "memory", "gpu"}}``, where the claimant fits once they
    are gone (what is held for it)."""

    __tablename__ = "reclaim_holds"
    claimant_id: Mapped[str] = mapped_column(ForeignKey("workloads.id"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    victims: Mapped[list[Any]]
    plan: Mapped[dict[str, Any]]
    since: Mapped[datetime]


class Reservation(Base):
    """Capacity kept free for a group or a user (exactly one set) during ``[start, end)``,
    optionally on one node."""

    __tablename__ = "reservations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    resources: Mapped[dict[str, Any]]
    node: Mapped[str | None] = mapped_column(String(63))
    start: Mapped[datetime]
    end: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageRecord(Base):
    """Resources a group's replica held during ``[start, end)``: fair share's input.

    One row per ended replica attempt; rows older than ~10 half-lives are dropped.
    """

    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    start: Mapped[datetime]
    end: Mapped[datetime] = mapped_column(index=True)
    resources: Mapped[dict[str, Any]]


class Template(Base):
    """A named job template (preset). ``group_id`` None: a platform template (admins
    write it, every group uses it); else the group's own. Its content lives in
    immutable :class:`TemplateVersion` rows."""

    __tablename__ = "templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"), index=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TemplateVersion(Base):
    """One version of a template: ``document`` holds its description, parameters,
    presets and spec (see plinth.services.template_model). Never updated."""

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobMetric(Base):
    """One training metrics point a job's replica reported: ``values`` maps a metric name
    to a finite float; ``time`` is seconds since the epoch. Ids order the points."""

    __tablename__ = "job_metrics"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    workload_id: Mapped[str] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(63))
    replica: Mapped[int] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(BigInteger)
    time: Mapped[float] = mapped_column(Float)
    values: Mapped[dict[str, Any]]


Index("ix_job_metrics_workload_id_id", JobMetric.workload_id, JobMetric.id)


# ---------------------------------------------------------------------------- model registry


class Model(Base):
    """A registered model: a name owned by a group; its versions are immutable."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """Version ``version`` (1, 2, ...) of a model: a package copied into the artifact store
    at ``path`` (relative to PLINTH_HOME) and where it came from (``lineage``: job, code,
    training config, data paths, metrics, schema hash)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"),
                                          index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    lineage: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """An alias (``production``, ``canary``, ...) pointing at one version of its model."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"),
                                          index=True)
    alias: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAliasMove(Base):
    """One move of an alias (kept forever: the alias's history)."""

    __tablename__ = "model_alias_moves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"),
                                          index=True)
    alias: Mapped[str] = mapped_column(String(63))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    moved_by: Mapped[str] = mapped_column(String(63))
    time: Mapped[datetime] = mapped_column(default=utcnow)


class ModelDelta(Base):
    """Delta ``seq`` (1, 2, ... in order) of one model version, stored at ``path``."""

    __tablename__ = "model_deltas"
    __table_args__ = (UniqueConstraint("version_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"),
                                            index=True)
    seq: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    source: Mapped[dict[str, Any]]
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
