"""/api/v1/tokens: named, expiring, revocable tokens; and disabling users (their access).

A revocation or a disabled user clears the principal cache after the commit: the
next request with an ended token gets 401 at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, BeforeValidator, Field

from plinth.api.deps import Caller, Ctx
from plinth.services import tokens as svc
from plinth.services.units import parse_duration_s
from plinth.store.models import Token, User

router = APIRouter(prefix="/api/v1", tags=["tokens"])


Lifetime = Annotated[
    float | None, BeforeValidator(lambda v: None if v is None else parse_duration_s(v))
]


class TokenCreate(BaseModel):
    """A named token for the caller (or, for an admin, for `user`)."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,62}$")
    expires_in: Lifetime = Field(
        default=None, description="lifetime: seconds or 90s/30m/2h/30d; none: until revoked"
    )
    user: str | None = Field(default=None, max_length=63)


class TokenInfo(BaseModel):
    id: int
    name: str | None
    user: str
    state: str = Field(description="active, expired or revoked")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenInfo):
    token: str = Field(description="the plaintext token; shown once, stored hashed")


class UserAccess(BaseModel):
    name: str
    disabled: bool
    tokens_revoked: int = 0


def _info(t: Token, user: str) -> TokenInfo:
    return TokenInfo(
        id=t.id, name=t.name, user=user, state=svc.token_state(t), created_at=t.created_at,
        expires_at=t.expires_at, revoked_at=t.revoked_at,
    )  # fmt: skip


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(req: TokenCreate, p: Caller, ctx: Ctx) -> TokenCreated:
    """A new named token, optionally expiring; the plaintext is shown once."""
    with ctx.db.session() as s:
        row, plaintext = svc.create_token(s, p, req.name, req.expires_in, req.user)
        user = req.user or p.user
        return TokenCreated(**_info(row, user).model_dump(), token=plaintext)


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(
    p: Caller,
    ctx: Ctx,
    user: Annotated[str | None, Query(max_length=63)] = None,
    all: Annotated[bool, Query(description="every user's tokens (admins)")] = False,
) -> list[TokenInfo]:
    """The caller's tokens (or `user`'s, for an admin), without the secrets."""
    with ctx.db.read() as s:
        return [_info(t, u) for t, u in svc.list_tokens(s, p, user, all)]


@router.delete("/tokens/{token_id}", response_model=TokenInfo)
def revoke_token(token_id: Annotated[int, Path(ge=1, le=2**62)], p: Caller, ctx: Ctx) -> TokenInfo:
    """Revoke a token (yours, or any for an admin): 401 for it from now on."""
    with ctx.db.session() as s:
        row = svc.revoke_token(s, p, token_id)
        out = _info(row, s.get(User, row.user_id).name)
    ctx.principals.clear()
    return out


@router.post("/users/{name}/disable", response_model=UserAccess)
def disable_user(name: Annotated[str, Path(max_length=63)], p: Caller, ctx: Ctx) -> UserAccess:
    """Disable a user (admin): every token it holds is revoked; its workloads keep
    running."""
    with ctx.db.session() as s:
        u, revoked = svc.disable_user(s, p, name)
        out = UserAccess(name=u.name, disabled=True, tokens_revoked=revoked)
    ctx.principals.clear()
    return out


@router.post("/users/{name}/enable", response_model=UserAccess)
def enable_user(name: Annotated[str, Path(max_length=63)], p: Caller, ctx: Ctx) -> UserAccess:
    """Enable a disabled user (admin); give it a new token (its old ones stay revoked)."""
    with ctx.db.session() as s:
        u = svc.enable_user(s, p, name)
        return UserAccess(name=u.name, disabled=False)
