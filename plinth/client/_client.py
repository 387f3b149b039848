"""The SDK's entry point: :class:`Client`."""

from __future__ import annotations

from typing import Any, Self, cast

from plinth.client._admin import Files, Groups, Nodes, QuotaExpansions, Reservations, Users
from plinth.client._deployments import Deployments
from plinth.client._http import API_PREFIX, Transport, resolve_token, resolve_url
from plinth.client._jobs import Jobs
from plinth.client._models import Models
from plinth.client._notebooks import Notebooks
from plinth.client._security import Admin, Tokens
from plinth.client._templates import Metrics, Templates
from plinth.client._types import User


class Client:
    """A connection to one Plinth server.

    ``url`` defaults to ``$PLINTH_URL`` (else ``http://127.0.0.1:8321``) and
    ``token`` to ``$PLINTH_TOKEN``. ``timeout`` is per request, in seconds.
    One ``httpx.Client`` is shared by every call of an instance; close it with
    :meth:`close` or use the client as a context manager.

    >>> with Client() as plinth:                       # doctest: +SKIP
    ...     job = plinth.jobs.submit(spec)
    ...     plinth.jobs.wait(job["id"])["state"]
    'succeeded'
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self._transport = Transport(resolve_url(url), resolve_token(token), timeout)
        self.groups = Groups(self._transport)
        self.users = Users(self._transport)
        self.nodes = Nodes(self._transport)
        self.files = Files(self._transport)
        self.jobs = Jobs(self._transport)
        self.quota_expansions = QuotaExpansions(self._transport)
        self.reservations = Reservations(self._transport)
        self.tokens = Tokens(self._transport)
        self.admin = Admin(self._transport)
        self.templates = Templates(self._transport)
        self.metrics = Metrics(self._transport)
        self.models = Models(self._transport, self.files)
        self.notebooks = Notebooks(self._transport)
        self.deployments = Deployments(self._transport)

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self._transport.url

    @property
    def token(self) -> str | None:
        return self._transport.token

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok"}`` when the server is up (no token needed)."""
        return cast("dict[str, Any]", self._transport.json("GET", "/healthz"))

    def whoami(self) -> User:
        """The user this client's token belongs to."""
        return cast(User, self._transport.json("GET", f"{API_PREFIX}/whoami"))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, token={'set' if self.token else None})"
