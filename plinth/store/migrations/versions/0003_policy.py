"""policy: caps that leave out a resource leave it uncapped, expansion revoke, reclaim holds

Revision ID: 0003
Revises: 0002

* ``users.cap``, ``groups.borrow_limit`` and ``groups.lend_limit`` now store only the
  resources an admin wrote: a resource left out is not capped. Before, the API stored
  every resource, filling the ones left out with 0 (``--cap cpu=1`` stored
  ``{"cpu": 1, "memory": 0, "gpu": 0}`` and capped memory at zero). The stored rows
  cannot tell a written zero from a filled one, so this migration keeps a zero only
  where it is the whole row's meaning: a row whose every resource is 0 (``--borrow-limit
  cpu=0``: no borrowing at all) stays all zeros; in any other row the zero resources are
  removed, i.e. become uncapped. See docs/scheduling.md ("Upgrading to 0003").
* ``quota_expansions`` gains ``revoked_at``, ``revoked_by`` and ``revoke_reason``.
* ``reclaim_holds``: capacity freed by preempted victims, kept for the claimant
  (plinth.scheduler.holds); one row per claimant.

Portable across SQLite (batch mode) and PostgreSQL.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RESOURCES = ("cpu", "memory", "gpu")


def only_written(q: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored cap or limit with its filled-in zeros removed (see the module docstring)."""
    if q is None:
        return None
    if all(not float(q.get(k, 0) or 0) for k in _RESOURCES):
        return {k: q.get(k, 0) for k in _RESOURCES}
    return {k: v for k, v in q.items() if float(v or 0)}


def _rewrite(table: str, columns: Sequence[str]) -> None:
    conn = op.get_bind()
    t = sa.table(table, sa.column("id", sa.Integer), *(sa.column(c, sa.JSON) for c in columns))
    for row in conn.execute(sa.select(t)).mappings().all():
        new = {c: only_written(row[c]) for c in columns}
        if any(new[c] != row[c] for c in columns):
            conn.execute(t.update().where(t.c.id == row["id"]).values(**new))


def upgrade() -> None:
    """Upgrade schema."""
    _rewrite("users", ["cap"])
    _rewrite("groups", ["borrow_limit", "lend_limit"])
    with op.batch_alter_table("quota_expansions", schema=None) as b:
        b.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
        b.add_column(sa.Column("revoked_by", sa.String(length=63), nullable=True))
        b.add_column(sa.Column("revoke_reason", sa.Text(), nullable=True))
    op.create_table(
        "reclaim_holds",
        sa.Column("claimant_id", sa.String(length=32), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("victims", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["claimant_id"], ["workloads.id"]),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"]),
        sa.PrimaryKeyConstraint("claimant_id"),
    )


def downgrade() -> None:
    """Downgrade schema (caps keep their new form: a missing resource reads as 0 again)."""
    op.drop_table("reclaim_holds")
    for column in ("revoke_reason", "revoked_by", "revoked_at"):
        op.drop_column("quota_expansions", column)
