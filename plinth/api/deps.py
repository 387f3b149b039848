"""FastAPI dependencies: the shared context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from plinth.api.context import AppContext
from plinth.services.auth import Principal, authenticate

__all__ = ["Caller", "Ctx", "get_ctx", "get_principal"]

_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer <token>`")


def get_ctx(request: Request) -> AppContext:
    return request.state.plinth


def get_principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller; 401 (via Unauthorized) without a valid bearer token."""
    ctx: AppContext = request.state.plinth
    token = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    if token:
        cached = ctx.principals.get(token)
        if cached is not None:
            return cached
    with ctx.db.read() as s:
        p = authenticate(s, token)
    ctx.principals.put(token, p)  # type: ignore[arg-type]  # authenticate refused None
    return p


Ctx = Annotated[AppContext, Depends(get_ctx)]
Caller = Annotated[Principal, Depends(get_principal)]
