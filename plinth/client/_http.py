"""The SDK's single HTTP transport: one shared ``httpx.Client``, errors mapped to ours."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx

from plinth.client._errors import (
    ConnectionError,
    InvalidInputError,
    PlinthError,
    error_for_status,
)

DEFAULT_URL = "http://127.0.0.1:8321"
API_PREFIX = "/api/v1"


def resolve_url(url: str | None) -> str:
    """The server's base URL: ``url``, else ``$PLINTH_URL``, else :data:`DEFAULT_URL`.

    Raises :class:`InvalidInputError` naming the source for a URL that cannot be parsed
    (``http://[::1``) or is not http(s)."""
    source = "--url" if url else "PLINTH_URL" if os.environ.get("PLINTH_URL") else "default"
    chosen = url or os.environ.get("PLINTH_URL") or DEFAULT_URL
    chosen = chosen.strip().rstrip("/")
    if "://" not in chosen:
        # Accept "host:port" as a convenience; a server is plain HTTP on loopback by default.
        chosen = "http://" + chosen
    try:
        parsed = httpx.URL(chosen)
        ok = parsed.scheme in ("http", "https") and bool(parsed.host)
    except (httpx.InvalidURL, ValueError, TypeError):
        ok = False
    if not ok:
        raise InvalidInputError(
            f"invalid server URL {chosen!r} (from {source}): give one like "
            "http://127.0.0.1:8321 or https://plinth.example.com"
        )
    return chosen


def resolve_token(token: str | None) -> str | None:
    """The bearer token: ``token``, else ``$PLINTH_TOKEN``, else ``None`` (anonymous).

    Raises :class:`InvalidInputError` for a token that cannot be sent in an HTTP header
    (non-ASCII characters, a line break inside it): naming the source, not the value."""
    source = "the token argument" if token is not None else "PLINTH_TOKEN"
    chosen = token if token is not None else os.environ.get("PLINTH_TOKEN")
    chosen = chosen.strip() if chosen else None
    if chosen and (not chosen.isascii() or not chosen.isprintable()):
        raise InvalidInputError(
            f"the token in {source} contains characters a token cannot have (non-ASCII, "
            "a line break or other control character); copy the token again exactly as "
            "`plinth user create` or `plinth user token` printed it"
        )
    return chosen or None


def segment(value: object, what: str) -> str:
    """``value`` as ONE URL path segment, percent-encoded (``/``, ``?``, ``#`` too).

    Raises :class:`InvalidInputError` for an empty value, ``.`` or ``..`` (which a URL
    would resolve as a path step), or a value that is not a string or integer."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise InvalidInputError(f"{what} must not be empty")
    if text in (".", ".."):
        raise InvalidInputError(f"{what} {text!r} is not a valid {what}")
    return quote(text, safe="")


class Transport:
    """Sends requests to one server and turns every failure into a :class:`PlinthError`.

    ``timeout`` is in seconds and applies to connect, read and write separately.
    Thread-safe: ``httpx.Client`` may be shared between threads.
    """

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url
        self.token = token
        headers = {"User-Agent": "plinth-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; return the response when its status is < 400.

        Raises :class:`ConnectionError` when no server answers and the matching
        :class:`APIError` subclass for an error status.
        """
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        kwargs: dict[str, Any] = {"params": params or None, "headers": headers}
        if json is not None:
            kwargs["json"] = json
        if content is not None:
            kwargs["content"] = content
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ConnectionError(self.url, _describe(exc)) from None
        except httpx.TimeoutException as exc:
            raise ConnectionError(self.url, f"no answer in time: {_describe(exc)}") from None
        except httpx.TransportError as exc:
            raise ConnectionError(self.url, _describe(exc)) from None
        if response.status_code >= 400:
            raise error_for_status(
                response.status_code, _detail_of(response), method=method, path=path
            )
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Like :meth:`request`, returning the decoded JSON body (``None`` for 204)."""
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise PlinthError(
                f"{method} {path}: the server at {self.url} answered "
                f"{response.status_code} with a body that is not JSON; is it a Plinth server?"
            ) from None


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _detail_of(response: httpx.Response) -> Any:
    """The ``detail`` of an error body, or a short rendering of whatever was sent."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:500] if text else f"HTTP {response.status_code} {response.reason_phrase}"
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body
