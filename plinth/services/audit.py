"""The audit log: who changed quotas, expansions, users and tokens, and when.

Services call :func:`record_audit` inside the transaction of the change, so a change
and its record commit together (or not at all). Admins read it through
``GET /api/v1/audit``. Records are never updated or deleted by the platform.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from plinth.services.auth import Principal, require_admin
from plinth.store.models import AuditRecord, utcnow

__all__ = ["list_audit", "record_audit"]


def record_audit(
    session: Session,
    actor: Principal | str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one record to `session`'s transaction: `actor` (a principal or a name such as
    ``"system"``) did `action` (e.g. ``"group.quota"``, ``"token.revoke"``) to `target`
    (e.g. ``"group:ads"``), with JSON-able `details` (the new values)."""
    name = actor if isinstance(actor, str) else actor.user
    session.add(
        AuditRecord(
            time=utcnow(), actor=name[:63], action=action[:63], target=target[:255],
            details=details,
        )
    )  # fmt: skip


def list_audit(
    session: Session,
    p: Principal,
    *,
    since: datetime | None = None,
    action: str | None = None,
    limit: int = 1000,
) -> list[AuditRecord]:
    """Records, oldest first (admins only); `action` matches exactly or as a prefix
    ending in ``.`` (``"token."``)."""
    require_admin(p)
    q = select(AuditRecord).order_by(AuditRecord.id)
    if since is not None:
        q = q.where(AuditRecord.time >= since)
    if action:
        q = q.where(
            AuditRecord.action.startswith(action) if action.endswith(".")
            else AuditRecord.action == action
        )  # fmt: skip
    return list(session.scalars(q.limit(limit)))
