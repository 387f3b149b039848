"""Request body limits, enforced before a route reads the body (pure ASGI middleware).

Every request body except a code upload (``POST /api/v1/files``, which has its own
cap, ``uploads.max_packed``) may be at most ``api.max_body`` bytes:

* a declared ``Content-Length`` over the limit is answered 413 at once, unread;
* a body without one (chunked) is counted as it arrives and refused (413) as soon
  as it passes the limit, so it is never held whole;
* a body-carrying request (POST, PUT, PATCH) to ``/api/`` with no bearer token is
  answered 401 before its body is read: FastAPI parses a body before it runs the
  authentication dependency, so without this anyone could make the server read
  ``api.max_body`` bytes per request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BodyLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_EXEMPT = {("POST", "/api/v1/files")}  # capped by the route itself (uploads.max_packed)
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _too_large(limit: int) -> str:
    return (
        f"request body over this server's limit of {limit} bytes (api.max_body); "
        "send less (large inputs belong in the code or a file the job reads)"
    )


class BodyLimit:
    """Wraps an ASGI app; `limit` is in bytes (see the module docstring)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in _EXEMPT:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if (
            scope["method"] in _BODY_METHODS
            and scope["path"].startswith("/api/")
            and not headers.get(b"authorization", b"").lower().startswith(b"bearer ")
        ):
            await _answer(send, 401, "missing token: send 'Authorization: Bearer <token>'",
                          {"www-authenticate": "Bearer"})  # fmt: skip
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _answer(send, 400, "Content-Length must be a number of bytes")
                return
            if size > self.limit:
                await _answer(send, 413, _too_large(self.limit))
                return
        seen = 0
        limit = self.limit

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException: FastAPI passes it through its body parsing as is.
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)


async def _answer(
    send: Send, status: int, detail: str, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # fmt: skip
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
