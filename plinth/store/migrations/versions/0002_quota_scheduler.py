"""quota scheduler: group caps, workload priority and preemption, expansions, reservations, usage

Revision ID: 0002
Revises: 0001
Adds what the quota scheduler (plinth.scheduler) reads and the server writes around it:
admin caps per group, a workload's priority class and preemption fields, time-boxed
quota expansions (kept as history), reservations, and usage records for fair share.
Portable across SQLite (batch mode) and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("groups", schema=None) as b:
        b.add_column(sa.Column("max_job", sa.JSON(), nullable=True))
        b.add_column(sa.Column("max_runtime_s", sa.Float(), nullable=True))
        b.add_column(sa.Column("max_workloads_per_user", sa.Integer(), nullable=True))
    with op.batch_alter_table("workloads", schema=None) as b:
        b.add_column(
            sa.Column("priority", sa.String(length=32), nullable=False, server_default="normal")
        )
        b.add_column(sa.Column("preempted_at", sa.DateTime(), nullable=True))
        b.add_column(sa.Column("preemptions", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "quota_expansions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("add", sa.JSON(), nullable=False),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("quota_expansions", schema=None) as b:
        b.create_index(b.f("ix_quota_expansions_group_id"), ["group_id"], unique=False)
        b.create_index(b.f("ix_quota_expansions_user_id"), ["user_id"], unique=False)
        b.create_index(b.f("ix_quota_expansions_end"), ["end"], unique=False)
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=True),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reservations", schema=None) as b:
        b.create_index(b.f("ix_reservations_group_id"), ["group_id"], unique=False)
        b.create_index(b.f("ix_reservations_user_id"), ["user_id"], unique=False)
        b.create_index(b.f("ix_reservations_end"), ["end"], unique=False)
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("usage_records", schema=None) as b:
        b.create_index(b.f("ix_usage_records_group_id"), ["group_id"], unique=False)
        b.create_index(b.f("ix_usage_records_end"), ["end"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("usage_records")
    op.drop_table("reservations")
    op.drop_table("quota_expansions")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it): batch mode would
    # recreate the tables, which SQLite refuses while other tables reference them.
    for column in ("preemptions", "preempted_at", "priority"):
        op.drop_column("workloads", column)
    for column in ("max_workloads_per_user", "max_runtime_s", "max_job"):
        op.drop_column("groups", column)
