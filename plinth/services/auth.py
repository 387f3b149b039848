"""Tokens and who is calling: hashing, authentication, the admin bootstrap.

Tokens are 256-bit random strings (``plt_`` + urlsafe base64); only their sha256 is
stored, which is safe for high-entropy secrets (no salt or slow hash needed).
A token with a ``workload_id`` is scoped: it may read and act on that workload only
(replicas get one as PLINTH_TOKEN). Except a notebook's: its kernels act for the user
(submit and follow jobs), so its token has the user's rights -- never an admin's --
and, like every workload token, it stops working when the session ends.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from plinth.services.errors import Forbidden, Unauthorized
from plinth.services.lifecycle import FINAL
from plinth.store.models import Group, Token, User, Workload, utcnow

__all__ = [
    "ADMIN_NAME",
    "DEFAULT_GROUP",
    "Principal",
    "PrincipalCache",
    "authenticate",
    "authenticate_hashed",
    "bootstrap_admin",
    "hash_token",
    "issue_token",
    "new_token",
    "require_admin",
    "require_unscoped",
    "write_admin_token",
]

_FINAL_STATES = frozenset(s.value for s in FINAL)
ADMIN_NAME = "admin"
DEFAULT_GROUP = "default"
TOKEN_PREFIX = "plt_"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: int
    user: str
    group_id: int
    group: str
    admin: bool
    workload_id: str | None = None  # set for a workload-scoped token
    #: When the token expires (None: never); the principal cache keeps it no longer.
    expires_at: datetime | None = field(default=None, compare=False)
    #: A notebook session's token (acts as its user): the session it dies with.
    session_id: str | None = field(default=None, compare=False)

    @property
    def scoped(self) -> bool:
        return self.workload_id is not None


def new_token() -> str:
    """A fresh plaintext token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token (sha256 hex)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_token(session: Session, user_id: int, workload_id: str | None = None) -> str:
    """Create a token for a user (scoped to `workload_id` when given); return its plaintext."""
    token = new_token()
    session.add(Token(token_hash=hash_token(token), user_id=user_id, workload_id=workload_id))
    return token


def authenticate(session: Session, token: str | None) -> Principal:
    """Resolve a bearer token to its principal; raise Unauthorized when absent, unknown,
    revoked, expired, its user disabled, or (a workload-scoped token) its workload
    finished -- the message says which."""
    if not token:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
    return authenticate_hashed(session, hash_token(token))


def authenticate_hashed(session: Session, token_hash: str) -> Principal:
    """``authenticate`` for a token known by its stored hash only (the web console's
    sessions keep the hash, never the plaintext); the same checks and messages."""
    row = session.execute(
        select(Token.workload_id, User.id, User.name, User.admin, Group.id, Group.name,
               Token.revoked_at, Token.expires_at, User.disabled, Workload.state,
               Workload.kind)
        .join(User, Token.user_id == User.id)
        .join(Group, User.group_id == Group.id)
        .outerjoin(Workload, Token.workload_id == Workload.id)
        .where(Token.token_hash == token_hash)
    ).first()  # fmt: skip
    if row is None:
        raise Unauthorized("invalid token")
    workload_id, uid, uname, admin, gid, gname, revoked, expires, disabled, wstate, kind = row
    if revoked is not None:
        raise Unauthorized("this token was revoked")
    if disabled:
        raise Unauthorized(f"user {uname!r} is disabled")
    if expires is not None and expires <= utcnow():
        raise Unauthorized("this token has expired: ask for a new one")
    if workload_id is not None and (wstate is None or wstate in _FINAL_STATES):
        raise Unauthorized(f"workload {workload_id} has finished: its token no longer works")
    if workload_id is not None and kind == "notebook":
        return Principal(uid, uname, gid, gname, False, None, expires, session_id=workload_id)
    # A workload-scoped token never carries its user's admin rights.
    return Principal(
        uid, uname, gid, gname, bool(admin) and workload_id is None, workload_id, expires
    )


def require_admin(p: Principal) -> None:
    """Raise Forbidden unless the caller is an admin."""
    if not p.admin:
        raise Forbidden("this action needs an admin token")


def require_unscoped(p: Principal) -> None:
    """Raise Forbidden for a workload-scoped token (it may only touch its own workload)."""
    if p.scoped:
        raise Forbidden("a workload-scoped token can only read and act on its own workload")


def bootstrap_admin(session: Session, home: Path, quota: dict[str, float]) -> str | None:
    """On an empty database create group ``default`` and user ``admin`` with a token.

    The token is PLINTH_ADMIN_TOKEN when set; otherwise a fresh one, written to
    ``home/admin.token`` with mode 0600 once `session`'s transaction has committed (a
    rolled-back bootstrap leaves no file naming a token that does not exist). Returns
    the plaintext token when it created the admin, else None (the database already had
    users).
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    group = session.scalar(select(Group).where(Group.name == DEFAULT_GROUP))
    if group is None:
        group = Group(name=DEFAULT_GROUP, quota=dict(quota), borrow_limit=None, lend_limit=None)
        session.add(group)
        session.flush()
    admin = User(name=ADMIN_NAME, group_id=group.id, admin=True, cap=None)
    session.add(admin)
    session.flush()
    token = os.environ.get("PLINTH_ADMIN_TOKEN") or None
    if token is None:
        token = new_token()
        fresh = token
        event.listen(session, "after_commit", lambda _s: write_admin_token(home, fresh), once=True)
    session.add(Token(token_hash=hash_token(token), user_id=admin.id))
    return token


def write_admin_token(home: Path, token: str) -> Path:
    """Write `token` to ``home/admin.token`` (mode 0600) and return the path.

    A new file is created with O_EXCL|O_NOFOLLOW (never through a symlink someone
    planted, never into an existing file's wider permissions), then renamed over
    ``admin.token``: the rename replaces a link itself, not what it points to."""
    path = home / "admin.token"
    tmp = home / f".admin.token.{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class PrincipalCache:
    """Remembers resolved tokens for `ttl_s` seconds (saves a query per API request).

    A token can end (revocation, expiry, its user disabled, its workload finished), so:
    an entry never outlives the token's ``expires_at``; whoever revokes tokens or
    disables users calls ``clear()`` after the commit; and workload-scoped tokens are
    not cached at all, since their workload ends in the control loop, which does not
    see this cache. A revoked token thus gets 401 at once.
    """

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(token)
            if hit is None or hit[0] < now:
                return None
            return hit[1]

    def put(self, token: str, p: Principal) -> None:
        if p.scoped or p.session_id is not None:
            return
        until = time.monotonic() + self.ttl_s
        if p.expires_at is not None:
            left = (p.expires_at - utcnow()).total_seconds()
            until = min(until, time.monotonic() + left)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token] = (until, p)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
