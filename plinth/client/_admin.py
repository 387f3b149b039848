"""Groups, users, nodes and files: the SDK's administrative resources."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from plinth.client._errors import PlinthError
from plinth.client._http import API_PREFIX, Transport, segment
from plinth.client._types import CreatedUser, FileInfo, Group, Node, Resources, User


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON body without the fields left at ``None`` (the server applies its defaults)."""
    return {k: v for k, v in fields.items() if v is not None}


class Groups:
    """Quota groups (teams). Writes need an admin token; members read their own group."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self,
        name: str,
        quota: Resources | dict[str, Any],
        *,
        borrow_limit: Resources | dict[str, Any] | None = None,
        lend_limit: Resources | dict[str, Any] | None = None,
        max_job: Resources | dict[str, Any] | None = None,
        max_runtime: float | str | None = None,
        max_workloads_per_user: int | None = None,
    ) -> Group:
        """Create group ``name`` with a nominal ``quota`` (memory as MiB or ``"32Gi"``).

        Admin caps: ``max_job`` (largest total demand of one job), ``max_runtime``
        (seconds or ``"2h"``), ``max_workloads_per_user`` (live workloads per user)."""
        body = _body(
            name=name, quota=quota, borrow_limit=borrow_limit, lend_limit=lend_limit,
            max_job=max_job, max_runtime=max_runtime,
            max_workloads_per_user=max_workloads_per_user,
        )  # fmt: skip
        return cast(Group, self._t.json("POST", f"{API_PREFIX}/groups", json=body))

    def list(self) -> list[Group]:
        return cast("list[Group]", self._t.json("GET", f"{API_PREFIX}/groups"))

    def get(self, name: str) -> Group:
        return cast(
            Group, self._t.json("GET", f"{API_PREFIX}/groups/{segment(name, 'group name')}")
        )

    def update(
        self,
        name: str,
        *,
        quota: Resources | dict[str, Any] | None = None,
        borrow_limit: Resources | dict[str, Any] | None = None,
        lend_limit: Resources | dict[str, Any] | None = None,
        max_job: Resources | dict[str, Any] | None = None,
        max_runtime: float | str | None = None,
        max_workloads_per_user: int | None = None,
    ) -> Group:
        """Change the given limits and caps of group ``name``; the others stay as they are."""
        body = _body(
            quota=quota, borrow_limit=borrow_limit, lend_limit=lend_limit, max_job=max_job,
            max_runtime=max_runtime, max_workloads_per_user=max_workloads_per_user,
        )  # fmt: skip
        return cast(
            Group,
            self._t.json("PATCH", f"{API_PREFIX}/groups/{segment(name, 'group name')}", json=body),
        )

    def delete(self, name: str) -> None:
        """Delete group ``name``; :class:`ConflictError` while it has users or live workloads."""
        self._t.request("DELETE", f"{API_PREFIX}/groups/{segment(name, 'group name')}")


class Users:
    """Users and their tokens (admin only, except a user renewing its own token)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self,
        name: str,
        group: str,
        *,
        cap: Resources | dict[str, Any] | None = None,
        admin: bool = False,
    ) -> CreatedUser:
        """Create a user in ``group``; returns ``{"user": ..., "token": ...}`` (token shown once)."""
        body = _body(name=name, group=group, cap=cap, admin=admin)
        return cast(CreatedUser, self._t.json("POST", f"{API_PREFIX}/users", json=body))

    def list(self) -> list[User]:
        return cast("list[User]", self._t.json("GET", f"{API_PREFIX}/users"))

    def get(self, name: str) -> User:
        return cast(User, self._t.json("GET", f"{API_PREFIX}/users/{segment(name, 'user name')}"))

    def new_token(self, name: str) -> str:
        """Issue a new token for user ``name`` and return it in plaintext."""
        body = self._t.json("POST", f"{API_PREFIX}/users/{segment(name, 'user name')}/tokens")
        return str(body["token"])


class Nodes:
    """The executor's nodes with their capacity and what is in use."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self) -> list[Node]:
        return cast("list[Node]", self._t.json("GET", f"{API_PREFIX}/nodes"))


class Files:
    """Code archives in the server's content-addressed file store."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def upload(self, directory: str | Path) -> FileInfo:
        """Pack ``directory`` (honouring its ``.gitignore``) and upload it.

        Returns ``{"sha256", "size"}``; use it in a job spec as
        ``code: {file: <sha256>}``. Uploading the same content twice stores it once.
        """
        path = Path(directory)
        if not path.is_dir():
            raise PlinthError(f"cannot upload {str(directory)!r}: not a directory")
        # Imported here: packing is only needed by this call.
        from plinth.artifacts.archive import pack_directory

        try:
            data = pack_directory(path)
        except (OSError, ValueError) as exc:
            # ValueError: the packer's UnsafeArchiveError (a link escaping the tree, over a cap).
            raise PlinthError(f"cannot pack {str(directory)!r}: {exc}") from None
        return self.upload_bytes(data)

    def upload_bytes(self, data: bytes) -> FileInfo:
        """Upload an already packed gzip'd tar archive."""
        body = self._t.json(
            "POST",
            f"{API_PREFIX}/files",
            content=data,
            headers={"Content-Type": "application/gzip"},
        )
        return cast(FileInfo, body)

    def get(self, sha256: str) -> FileInfo:
        return cast(
            FileInfo, self._t.json("GET", f"{API_PREFIX}/files/{segment(sha256, 'file sha256')}")
        )


def _when(t: datetime | str | None) -> str | None:
    """A time for the API: ISO-8601; an aware or naive (UTC) datetime is converted."""
    if t is None or isinstance(t, str):
        return t
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.isoformat()


class QuotaExpansions:
    """Time-boxed extra quota for a group or a user (grants need an admin token)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def grant(
        self,
        *,
        add: Resources | dict[str, Any],
        until: datetime | str,
        reason: str,
        group: str | None = None,
        user: str | None = None,
        start: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Grant ``add`` to exactly one of ``group`` or ``user`` from ``start`` (default
        now) until ``until`` (ISO-8601 or datetime); it expires by itself."""
        body = _body(group=group, user=user, add=add, start=_when(start), end=_when(until),
                     reason=reason)  # fmt: skip
        return cast("dict[str, Any]", self._t.json("POST", f"{API_PREFIX}/quota-expansions",
                                                   json=body))  # fmt: skip

    def list(self, *, active: bool = False) -> list[dict[str, Any]]:
        """Expansions with history, newest first (``active``: only those in force now)."""
        params = {"active": "true"} if active else None
        return cast(
            "list[dict[str, Any]]",
            self._t.json("GET", f"{API_PREFIX}/quota-expansions", params=params),
        )

    def revoke(self, expansion_id: int, *, reason: str) -> dict[str, Any]:
        """End an expansion now (admin); ``reason`` is recorded with who revoked it."""
        return cast("dict[str, Any]", self._t.json(
            "DELETE", f"{API_PREFIX}/quota-expansions/{int(expansion_id)}",
            params={"reason": reason}))  # fmt: skip


class Reservations:
    """Capacity kept free for a group or a user during a window (admin writes)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self,
        *,
        resources: Resources | dict[str, Any],
        start: datetime | str,
        until: datetime | str,
        group: str | None = None,
        user: str | None = None,
        node: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Book ``resources`` for exactly one of ``group`` or ``user``, optionally on ``node``."""
        body = _body(group=group, user=user, resources=resources, node=node,
                     start=_when(start), end=_when(until), reason=reason)  # fmt: skip
        return cast("dict[str, Any]", self._t.json("POST", f"{API_PREFIX}/reservations",
                                                   json=body))  # fmt: skip

    def list(self, *, include_ended: bool = False) -> list[dict[str, Any]]:
        params = {"all": "true"} if include_ended else None
        return cast(
            "list[dict[str, Any]]", self._t.json("GET", f"{API_PREFIX}/reservations", params=params)
        )

    def delete(self, reservation_id: str) -> None:
        self._t.request(
            "DELETE", f"{API_PREFIX}/reservations/{segment(reservation_id, 'reservation id')}"
        )
