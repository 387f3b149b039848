"""Notebooks: start, inspect, wait for, extend and stop JupyterLab sessions."""

from __future__ import annotations

import time
from typing import Any, cast

from plinth.client._errors import PlinthError
from plinth.client._http import API_PREFIX, Transport, segment
from plinth.client._types import TERMINAL_STATES, Event, LogChunk


def _nb(notebook_id: str) -> str:
    return f"{API_PREFIX}/notebooks/{segment(notebook_id, 'notebook id')}"


class Notebooks:
    """JupyterLab sessions of the caller's group (every group's for an admin).

    A session is a dict: ``id``, ``state``, ``ready``, ``url``, ``token`` (its owner
    only), ``idle_timeout``/``max_lifetime`` (seconds), ``ends_at``, ``activity``, ...
    (the API's NotebookOut)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def start(
        self,
        *,
        name: str | None = None,
        resources: dict[str, Any] | None = None,
        idle_timeout: str | float | None = None,
        max_lifetime: str | float | None = None,
        at: str | None = None,
        duration: str | float | None = None,
        group: str | None = None,
    ) -> dict[str, Any]:
        """Start a session now, or book one (``at`` an ISO time, with ``duration``).
        Durations are seconds or strings with units (``30m``, ``8h``)."""
        body = {"name": name, "resources": resources, "idle_timeout": idle_timeout,
                "max_lifetime": max_lifetime, "at": at, "duration": duration, "group": group}
        body = {k: v for k, v in body.items() if v is not None}
        return cast("dict[str, Any]", self._t.json("POST", f"{API_PREFIX}/notebooks", json=body))

    def list(self, *, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        params = {"state": state, "limit": limit}
        return cast("list[dict[str, Any]]",
                    self._t.json("GET", f"{API_PREFIX}/notebooks", params=params))  # fmt: skip

    def get(self, notebook_id: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self._t.json("GET", _nb(notebook_id)))

    def stop(self, notebook_id: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self._t.json("POST", f"{_nb(notebook_id)}/stop"))

    def extend(self, notebook_id: str, by: str | float) -> dict[str, Any]:
        """Push the session's lifetime by ``by`` (``2h``), within its group's cap."""
        return cast("dict[str, Any]",
                    self._t.json("POST", f"{_nb(notebook_id)}/extend", json={"by": by}))  # fmt: skip

    def events(self, notebook_id: str) -> list[Event]:
        return cast("list[Event]", self._t.json("GET", f"{_nb(notebook_id)}/events"))

    def logs(self, notebook_id: str, *, offset: int = 0) -> LogChunk:
        """JupyterLab's output (the latest attempt) from byte ``offset``."""
        response = self._t.request("GET", f"{_nb(notebook_id)}/logs", params={"offset": offset})
        try:
            next_offset = int(response.headers.get("X-Log-Offset", ""))
        except ValueError:
            next_offset = offset + len(response.content)
        complete = response.headers.get("X-Log-Complete", "false").strip().lower() == "true"
        return LogChunk(data=response.content, offset=next_offset, complete=complete)

    def wait_ready(
        self, notebook_id: str, *, timeout: float | None = None, poll_interval: float = 0.5
    ) -> dict[str, Any]:
        """Block until JupyterLab answers (``ready``) and return the session; raise
        PlinthError when it ends first or ``timeout`` seconds pass (it keeps going)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            nb = self.get(notebook_id)
            if nb.get("ready"):
                return nb
            if nb.get("state") in TERMINAL_STATES:
                raise PlinthError(
                    f"notebook {notebook_id} ended {nb.get('state')} before it was ready: "
                    f"{nb.get('reason')}"
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise PlinthError(
                    f"notebook {notebook_id} is still {nb.get('state')} and not ready after "
                    f"{timeout:g}s of waiting"
                )
            time.sleep(poll_interval)
