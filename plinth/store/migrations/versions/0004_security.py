"""security: named, expiring, revocable tokens; disabled users; audit log; upload grants

Revision ID: 0004
Revises: 0002
Tokens get a name, an expiry and a revocation time (rows are kept: the list shows
revoked ones); users can be disabled; ``audit_log`` records who changed quotas,
expansions, users and tokens, and when; ``file_grants`` ties an uploaded archive to
the groups that uploaded it (only they may run it). Portable across SQLite (batch
mode) and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Plain ADD COLUMN: batch mode would recreate these tables, which SQLite refuses
    # while other tables reference them.
    op.add_column("tokens", sa.Column("name", sa.String(length=63), nullable=True))
    op.add_column("tokens", sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.add_column("tokens", sa.Column("revoked_at", sa.DateTime(), nullable=True))
    op.add_column(
        "users", sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=63), nullable=False),
        sa.Column("action", sa.String(length=63), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as b:
        b.create_index(b.f("ix_audit_log_time"), ["time"], unique=False)
    op.create_table(
        "file_grants",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["files.sha256"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("sha256", "group_id"),
    )
    with op.batch_alter_table("file_grants", schema=None) as b:
        b.create_index(b.f("ix_file_grants_user_id"), ["user_id"], unique=False)
    # Archives uploaded before this revision: granted to their uploader's group.
    op.execute(
        "INSERT INTO file_grants (sha256, group_id, user_id, created_at) "
        "SELECT files.sha256, users.group_id, files.user_id, files.created_at "
        "FROM files JOIN users ON users.id = files.user_id"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("file_grants")
    op.drop_table("audit_log")
    op.drop_column("users", "disabled")
    for column in ("revoked_at", "expires_at", "name"):
        op.drop_column("tokens", column)
