"""Who is looking, and whether a form may act: the console's session and CSRF rules.

- A page needs a live session (:mod:`plinth.web.sessions`); the session's token hash
  is authenticated on every request exactly as the REST API authenticates a bearer
  token, so the console sees what the API would show that token -- no more.
- Every state-changing request is a POST of an urlencoded form that must (1) come
  from this server's own origin (``Origin``, else ``Referer``, equal to the request's
  scheme and ``Host``) and (2) carry the session's CSRF token in its ``csrf`` field.
  The cookie is also ``SameSite=Strict``; the checks hold even where it is not.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from pydantic import ValidationError

from plinth.api.context import AppContext
from plinth.services.auth import Principal, authenticate_hashed
from plinth.services.errors import ServiceError, Unauthorized
from plinth.web.sessions import COOKIE, ConsoleSession, SessionStore

__all__ = [
    "ConsoleError",
    "LoginRequired",
    "Viewer",
    "check_origin",
    "read_form",
    "service_errors",
    "viewer",
]

MAX_FIELDS = 200


class ConsoleError(Exception):
    """A refusal shown as the console's error page with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginRequired(Exception):
    """No live session: pages redirect to /login, fragments and POSTs get 401."""


@dataclass(frozen=True)
class Viewer:
    p: Principal
    session: ConsoleSession
    sid: str

    @property
    def csrf(self) -> str:
        return self.session.csrf


def context(request: Request) -> AppContext:
    """The running control plane (lifespan state; the app's own for a client that did
    not run the lifespan itself, e.g. a second test client on one app)."""
    ctx = getattr(request.state, "plinth", None)
    return ctx if ctx is not None else request.app.state.plinth


def sessions(request: Request) -> SessionStore:
    return request.app.state.console_sessions


def viewer(request: Request) -> Viewer:
    """The logged-in caller (a FastAPI dependency); raises LoginRequired."""
    sid = request.cookies.get(COOKIE)
    store = sessions(request)
    sess = store.get(sid)
    if sess is None or sid is None:
        raise LoginRequired()
    ctx = context(request)
    try:
        with ctx.db.read() as s:
            p = authenticate_hashed(s, sess.token_hash)
    except Unauthorized:
        store.drop(sid)  # the token was revoked or expired, or the user disabled
        raise LoginRequired() from None
    return Viewer(p, sess, sid)


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(request: Request) -> None:
    """Refuse (403) a request whose Origin (or, without one, Referer) is not this
    server's own scheme://host -- a form posted from another site."""
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        origin = _origin_of(referer) if referer else None
    else:
        origin = origin.lower()
    if origin != expected:
        raise ConsoleError(
            403,
            f"cross-origin request refused: it came from {origin or 'an unknown origin'}, "
            f"not {expected}; use the console's own pages",
        )


async def read_form(request: Request, csrf: str | None) -> dict[str, str]:
    """The urlencoded form of a POST after the origin and CSRF checks (`csrf`: the
    expected token; None skips the token check, for the login form's own scheme)."""
    check_origin(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise ConsoleError(415, "send the form as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise ConsoleError(400, f"the form could not be read: {e}") from None
    form = {k: v for k, v in pairs}
    if csrf is not None and not secrets.compare_digest(
        form.get("csrf", "").encode(), csrf.encode()
    ):
        raise ConsoleError(403, "the form's CSRF token is missing or stale: reload the page")
    return form


def _where(loc: tuple) -> str:
    return ".".join(str(x) for x in loc if x not in ("JobSpec", "TemplatedJob")) or "form"


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn the services' and models' refusals into the console's error page."""
    try:
        yield
    except ServiceError as e:
        raise ConsoleError(e.status, e.message) from None
    except ValidationError as e:
        msgs = [
            f"{_where(err.get('loc', ()))}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}"
            for err in e.errors()
        ]
        raise ConsoleError(422, "; ".join(msgs[:10])) from None
    except ValueError as e:  # InputError from the quantity parser, bad numbers
        raise ConsoleError(422, str(e)) from None
