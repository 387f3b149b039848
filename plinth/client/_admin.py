"""Groups, users, nodes and files: the SDK's administrative resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from plinth.client._errors import PlinthError
from plinth.client._http import API_PREFIX, Transport
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
    ) -> Group:
        """Create group ``name`` with a nominal ``quota`` (memory as MiB or ``"32Gi"``)."""
        body = _body(name=name, quota=quota, borrow_limit=borrow_limit, lend_limit=lend_limit)
        return cast(Group, self._t.json("POST", f"{API_PREFIX}/groups", json=body))

    def list(self) -> list[Group]:
        return cast("list[Group]", self._t.json("GET", f"{API_PREFIX}/groups"))

    def get(self, name: str) -> Group:
        return cast(Group, self._t.json("GET", f"{API_PREFIX}/groups/{name}"))

    def update(
        self,
        name: str,
        *,
        quota: Resources | dict[str, Any] | None = None,
        borrow_limit: Resources | dict[str, Any] | None = None,
        lend_limit: Resources | dict[str, Any] | None = None,
    ) -> Group:
        """Change the given limits of group ``name``; the others stay as they are."""
        body = _body(quota=quota, borrow_limit=borrow_limit, lend_limit=lend_limit)
        return cast(Group, self._t.json("PATCH", f"{API_PREFIX}/groups/{name}", json=body))

    def delete(self, name: str) -> None:
        """Delete group ``name``; :class:`ConflictError` while it has users or live workloads."""
        self._t.request("DELETE", f"{API_PREFIX}/groups/{name}")


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
        return cast(User, self._t.json("GET", f"{API_PREFIX}/users/{name}"))

    def new_token(self, name: str) -> str:
        """Issue a new token for user ``name`` and return it in plaintext."""
        body = self._t.json("POST", f"{API_PREFIX}/users/{name}/tokens")
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
        return cast(FileInfo, self._t.json("GET", f"{API_PREFIX}/files/{sha256}"))
