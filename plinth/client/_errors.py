"""The SDK's exceptions: one root, mapped from HTTP status codes at the boundary.

See the hierarchy in :mod:`plinth.client`. Foreign errors (httpx's transport
errors, JSON decoding) never escape the SDK: ``_http`` maps them here.
"""

from __future__ import annotations

from typing import Any


class PlinthError(Exception):
    """Root of every error the SDK raises."""


class InvalidInputError(PlinthError, ValueError):
    """An argument to the SDK is unusable, found before anything is sent: an empty
    id, a malformed server URL, a token with characters no HTTP header may hold."""


# Deliberately shadows the builtin inside this package: plinth.client.ConnectionError.
class ConnectionError(PlinthError):
    """No Plinth server answered at ``url`` (refused, unreachable, timed out)."""

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"cannot reach the Plinth server at {url} ({cause}). "
            "Start one with `plinth server`, or point PLINTH_URL (or --url) at a running server."
        )


class APIError(PlinthError):
    """The server answered with an error status.

    ``status`` is the HTTP status code; ``detail`` is the server's ``detail``
    field (a string, or FastAPI's list of validation problems); ``message``
    is a one-line human rendering of it.
    """

    def __init__(self, status: int, detail: Any, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path
        self.message = format_detail(detail)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, detail={self.detail!r})"


class AuthError(APIError):
    """401 (missing or invalid token) or 403 (not allowed, e.g. admin-only)."""


class NotFoundError(APIError):
    """404: the resource does not exist, or is not visible to this token."""


class ConflictError(APIError):
    """409: a duplicate name, or a resource still in use."""


class ValidationError(APIError):
    """Any other 4xx: the request was rejected as invalid (400, 413, 422, ...)."""


def format_detail(detail: Any) -> str:
    """Render an error ``detail`` (string or FastAPI's list of problems) as one line.

    FastAPI's items look like ``{"loc": ["body", "roles", "w", "replicas"],
    "msg": "Input should be greater than or equal to 1", ...}``; they become
    ``roles.w.replicas: Input should be greater than or equal to 1``.
    """
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
                where = ".".join(loc)
                parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts) if parts else "invalid request"
    if detail is None:
        return "no detail given"
    return str(detail)


def error_for_status(status: int, detail: Any, *, method: str = "", path: str = "") -> APIError:
    """Return the most specific :class:`APIError` subclass for an HTTP ``status``."""
    cls: type[APIError]
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    elif 400 <= status < 500:
        cls = ValidationError
    else:
        cls = APIError
    return cls(status, detail, method=method, path=path)
