"""Users and their API tokens. Admins manage users; a user may mint its own tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from plinth.services.audit import record_audit
from plinth.services.auth import Principal, issue_token, require_admin, require_unscoped
from plinth.services.errors import Conflict, Forbidden, NotFound
from plinth.services.specs import UserCreate
from plinth.store.models import Group, User

__all__ = ["caller_user", "create_token", "create_user", "get_user", "list_users", "user_row"]


def user_row(session: Session, u: User) -> tuple[User, str]:
    """A user with its group's name."""
    return u, session.scalar(select(Group.name).where(Group.id == u.group_id)) or ""


def caller_user(session: Session, p: Principal) -> User:
    """The caller's own user (any token, a workload-scoped one too)."""
    u = session.get(User, p.user_id)
    if u is None:  # deleted since the token was checked
        raise NotFound("your user no longer exists")
    return u


def _get(session: Session, name: str) -> User:
    u = session.scalar(select(User).where(User.name == name))
    if u is None:
        raise NotFound(f"user {name!r} not found")
    return u


def create_user(session: Session, p: Principal, req: UserCreate) -> tuple[User, str, str]:
    """Create a user and its first token; return (user, group name, plaintext token)."""
    require_admin(p)
    gid = session.scalar(select(Group.id).where(Group.name == req.group))
    if gid is None:
        raise NotFound(f"group {req.group!r} not found; create it first")
    if session.scalar(select(User.id).where(User.name == req.name)) is not None:
        raise Conflict(f"user {req.name!r} already exists")
    u = User(
        name=req.name,
        group_id=gid,
        admin=req.admin,
        cap=req.cap.model_dump() if req.cap else None,
    )
    session.add(u)
    session.flush()
    record_audit(session, p, "user.create", f"user:{u.name}", req.model_dump(mode="json"))
    return u, req.group, issue_token(session, u.id)


def list_users(session: Session, p: Principal) -> list[tuple[User, str]]:
    """All users with their group names (admin only)."""
    require_admin(p)
    rows = session.execute(
        select(User, Group.name).join(Group, User.group_id == Group.id).order_by(User.name)
    )
    return [(u, g) for u, g in rows]


def get_user(session: Session, p: Principal, name: str) -> tuple[User, str]:
    """One user; admins see anyone, a user sees itself (others are 404 to members)."""
    require_unscoped(p)
    u = _get(session, name)
    if not p.admin and u.id != p.user_id:
        raise NotFound(f"user {name!r} not found")
    return user_row(session, u)


def create_token(session: Session, p: Principal, name: str) -> str:
    """A new token for user `name`: by an admin, or by that user itself."""
    require_unscoped(p)
    u = _get(session, name) if p.admin else None
    if u is None:
        if name != p.user:
            raise Forbidden("only an admin can create tokens for another user")
        u = _get(session, name)
    if u.disabled:
        raise Conflict(f"user {name!r} is disabled: enable it before giving it tokens")
    record_audit(session, p, "token.create", f"user:{u.name}")
    return issue_token(session, u.id)
