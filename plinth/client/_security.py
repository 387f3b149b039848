"""Tokens, user access, the audit log and retention: the SDK's security resources."""

from __future__ import annotations

from typing import Any, cast

from plinth.client._http import API_PREFIX, Transport, segment


class Tokens:
    """Named API tokens. Everyone manages its own; admins anyone's."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self, name: str, *, expires_in: float | str | None = None, user: str | None = None
    ) -> dict[str, Any]:
        """A new token (``expires_in``: seconds or ``"30d"``; None: until revoked). The
        result holds the plaintext ``token``, shown only this once."""
        body = {k: v for k, v in {"name": name, "expires_in": expires_in, "user": user}.items()
                if v is not None}  # fmt: skip
        return cast("dict[str, Any]", self._t.json("POST", f"{API_PREFIX}/tokens", json=body))

    def list(self, *, user: str | None = None, all_users: bool = False) -> list[dict[str, Any]]:
        """Tokens without their secrets: yours, `user`'s, or (admins) everyone's."""
        params: dict[str, Any] = {}
        if user is not None:
            params["user"] = user
        if all_users:
            params["all"] = "true"
        return cast(
            "list[dict[str, Any]]", self._t.json("GET", f"{API_PREFIX}/tokens", params=params)
        )

    def revoke(self, token_id: int | str) -> dict[str, Any]:
        """Revoke a token by its id: it gets 401 from now on."""
        tid = segment(str(token_id), "token id")
        return cast("dict[str, Any]", self._t.json("DELETE", f"{API_PREFIX}/tokens/{tid}"))


class Admin:
    """Administration: disabling users, the audit log, a retention sweep (admins)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def disable_user(self, name: str) -> dict[str, Any]:
        """Disable a user: its tokens are revoked; its workloads keep running."""
        path = f"{API_PREFIX}/users/{segment(name, 'user name')}/disable"
        return cast("dict[str, Any]", self._t.json("POST", path))

    def enable_user(self, name: str) -> dict[str, Any]:
        path = f"{API_PREFIX}/users/{segment(name, 'user name')}/enable"
        return cast("dict[str, Any]", self._t.json("POST", path))

    def audit(self, *, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if action:
            params["action"] = action
        return cast(
            "list[dict[str, Any]]", self._t.json("GET", f"{API_PREFIX}/audit", params=params)
        )

    def gc(self) -> dict[str, Any]:
        """A retention sweep now; what it removed."""
        return cast("dict[str, Any]", self._t.json("POST", f"{API_PREFIX}/admin/gc"))
