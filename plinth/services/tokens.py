"""Named API tokens: creation with an expiry, listing, revocation; disabling users.

A token ends when it is revoked (``revoked_at``), when it expires (``expires_at``),
when its user is disabled (every token of the user is revoked), or -- for a token
scoped to a workload -- when that workload has finished. ``authenticate`` in
:mod:`plinth.services.auth` checks all four on every uncached request; callers that
revoke must clear the API's principal cache after the commit, so that the 401 is
immediate. Rows are kept: a listing shows what ended when.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from plinth.services.audit import record_audit
from plinth.services.auth import Principal, hash_token, new_token, require_admin, require_unscoped
from plinth.services.errors import Conflict, Forbidden, Invalid, NotFound
from plinth.store.models import Token, User, utcnow

__all__ = [
    "MAX_TOKEN_LIFETIME_S",
    "create_token",
    "disable_user",
    "enable_user",
    "list_tokens",
    "revoke_token",
    "token_state",
]

#: The longest lifetime a named token may ask for (seconds): about 10 years.
MAX_TOKEN_LIFETIME_S = 10 * 365 * 86400.0


def _user(session: Session, name: str) -> User:
    u = session.scalar(select(User).where(User.name == name))
    if u is None:
        raise NotFound(f"user {name!r} not found")
    return u


def _target_user(session: Session, p: Principal, name: str | None) -> User:
    """The user a token request is about: `p` itself, or (admins only) `name`."""
    require_unscoped(p)
    if name is None or name == p.user:
        return _user(session, p.user)
    if not p.admin:
        raise Forbidden("only an admin can manage another user's tokens")
    return _user(session, name)


def create_token(
    session: Session,
    p: Principal,
    name: str,
    expires_in_s: float | None,
    user: str | None = None,
) -> tuple[Token, str]:
    """A new named token for `user` (default: the caller); returns (row, plaintext).
    `expires_in_s`: lifetime in seconds (None: until revoked)."""
    u = _target_user(session, p, user)
    if u.disabled:
        raise Conflict(f"user {u.name!r} is disabled: enable it before giving it tokens")
    expires_at = None
    if expires_in_s is not None:
        if not 0 < expires_in_s <= MAX_TOKEN_LIFETIME_S:
            raise Invalid(
                f"expires_in must be more than 0 and at most {MAX_TOKEN_LIFETIME_S:g} "
                f"seconds (10 years), got {expires_in_s:g}"
            )
        expires_at = utcnow() + timedelta(seconds=expires_in_s)
    plaintext = new_token()
    row = Token(token_hash=hash_token(plaintext), user_id=u.id, name=name, expires_at=expires_at)
    session.add(row)
    session.flush()
    record_audit(session, p, "token.create", f"user:{u.name}",
                 {"token_id": row.id, "name": name,
                  "expires_at": expires_at.isoformat() if expires_at else None})  # fmt: skip
    return row, plaintext


def list_tokens(
    session: Session, p: Principal, user: str | None = None, all_users: bool = False
) -> list[tuple[Token, str]]:
    """(token, user name) of the caller's tokens, or `user`'s, or (admins, `all_users`)
    everyone's; workload-scoped tokens are left out (they end with their workload)."""
    q = (
        select(Token, User.name)
        .join(User, Token.user_id == User.id)
        .where(Token.workload_id.is_(None))
        .order_by(Token.id)
    )
    if all_users:
        require_admin(p)
    else:
        q = q.where(Token.user_id == _target_user(session, p, user).id)
    return [(t, n) for t, n in session.execute(q)]


def revoke_token(session: Session, p: Principal, token_id: int) -> Token:
    """Revoke one token (an admin: any; a user: its own). Idempotent."""
    require_unscoped(p)
    row = session.get(Token, token_id)
    if row is None or row.workload_id is not None or (not p.admin and row.user_id != p.user_id):
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        owner = session.scalar(select(User.name).where(User.id == row.user_id))
        record_audit(session, p, "token.revoke", f"user:{owner}",
                     {"token_id": row.id, "name": row.name})  # fmt: skip
    return row


def _set_disabled(session: Session, p: Principal, name: str, disabled: bool) -> User:
    require_admin(p)
    u = _user(session, name)
    if disabled and u.id == p.user_id:
        raise Conflict("an admin cannot disable itself (it would lock itself out)")
    u.disabled = disabled
    return u


def disable_user(session: Session, p: Principal, name: str) -> tuple[User, int]:
    """Disable a user (admin): revoke every token it holds, workload-scoped ones
    included (its running workloads keep running but can no longer call the API as
    it). Returns (user, tokens revoked). Idempotent."""
    u = _set_disabled(session, p, name, True)
    now = utcnow()
    revoked = session.execute(
        update(Token)
        .where(Token.user_id == u.id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    record_audit(session, p, "user.disable", f"user:{u.name}", {"tokens_revoked": revoked})
    return u, revoked


def enable_user(session: Session, p: Principal, name: str) -> User:
    """Enable a disabled user (admin). Its old tokens stay revoked: give it a new one."""
    u = _set_disabled(session, p, name, False)
    record_audit(session, p, "user.enable", f"user:{u.name}")
    return u


def token_state(t: Token, now: datetime | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if t.revoked_at is not None:
        return "revoked"
    if t.expires_at is not None and t.expires_at <= (now or utcnow()):
        return "expired"
    return "active"
