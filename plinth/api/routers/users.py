"""/api/v1/users: users and their tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from plinth.api.convert import user_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import TokenOut, UserCreated, UserOut
from plinth.services import users as svc
from plinth.services.specs import UserCreate

router = APIRouter(prefix="/api/v1/users", tags=["users"])
UserName = Annotated[str, Path(max_length=63)]


@router.post("", status_code=201, response_model=UserCreated)
def create_user(req: UserCreate, p: Caller, ctx: Ctx) -> UserCreated:
    """Create a user in a group (admin); the response holds its first token, shown once."""
    with ctx.db.session() as s:
        u, group, token = svc.create_user(s, p, req)
        return UserCreated(user=user_out(u, group), token=token)


@router.get("", response_model=list[UserOut])
def list_users(p: Caller, ctx: Ctx) -> list[UserOut]:
    """All users (admin)."""
    with ctx.db.read() as s:
        return [user_out(u, g) for u, g in svc.list_users(s, p)]


@router.get("/{name}", response_model=UserOut)
def get_user(name: UserName, p: Caller, ctx: Ctx) -> UserOut:
    with ctx.db.read() as s:
        return user_out(*svc.get_user(s, p, name))


@router.post("/{name}/tokens", status_code=201, response_model=TokenOut)
def create_token(name: UserName, p: Caller, ctx: Ctx) -> TokenOut:
    """A new token for the user (admin, or the user itself)."""
    with ctx.db.session() as s:
        return TokenOut(token=svc.create_token(s, p, name))
