"""Templates (presets) and a job's live training metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

from plinth.client._http import API_PREFIX, Transport, segment
from plinth.client._types import TERMINAL_STATES


class Templates:
    """Named, versioned, parameterised job specs (see docs/templates.md)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def publish(self, document: dict[str, Any]) -> dict[str, Any]:
        """Publish a template document: version 1 of a new name, else the next version
        (the same document as the latest version returns that version unchanged).

        Returns the version, plus ``created``: whether this call added it (HTTP 201)."""
        response = self._t.request("POST", f"{API_PREFIX}/templates", json=document)
        return {**response.json(), "created": response.status_code == 201}

    def list(self) -> list[dict[str, Any]]:
        """The latest version of every template this token may use, by name."""
        return cast("list[dict[str, Any]]", self._t.json("GET", f"{API_PREFIX}/templates"))

    def get(self, name: str, version: int | None = None) -> dict[str, Any]:
        """One version of a template (default: the latest)."""
        path = _template(name)
        if version is not None:
            path += f"/versions/{segment(version, 'version')}"
        return cast("dict[str, Any]", self._t.json("GET", path))

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a template, oldest first."""
        return cast("list[dict[str, Any]]", self._t.json("GET", f"{_template(name)}/versions"))


class Metrics:
    """Live training metrics of jobs: points ``{id, role, replica, step, time, values}``."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def post(self, job_id: str, points: list[dict[str, Any]]) -> int:
        """Report points (at most 1000 per call); returns how many were accepted."""
        body = self._t.json("POST", f"{_job(job_id)}/metrics", json={"points": points})
        return int(body["accepted"])

    def page(
        self, job_id: str, *, name: str | None = None, after: int | None = None
    ) -> dict[str, Any]:
        """One page: ``{"points": [...], "last": id}``; pass ``last`` as ``after`` next."""
        params = {"name": name, "after": after}
        return cast("dict[str, Any]", self._t.json("GET", f"{_job(job_id)}/metrics",
                                                   params=params))  # fmt: skip

    def _pages(
        self, job_id: str, name: str | None, after: int | None
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        """Pages of points with id > ``after`` until none is left: (points, last id)."""
        while True:
            page = self.page(job_id, name=name, after=after)
            last = page.get("last")
            if last is None:
                return
            after = last
            yield page["points"], after

    def list(
        self, job_id: str, *, name: str | None = None, after: int | None = None
    ) -> list[dict[str, Any]]:
        """Every point of the job so far with id > ``after`` (all pages), ordered by id."""
        return [pt for points, _ in self._pages(job_id, name, after) for pt in points]

    def follow(
        self,
        job_id: str,
        *,
        name: str | None = None,
        poll_interval: float = 1.0,
    ) -> Iterator[dict[str, Any]]:
        """Yield the job's points as they arrive (from the first) until the job has
        ended and every point was read. ``poll_interval`` is in seconds."""
        after: int | None = None
        while True:
            ended = self._t.json("GET", _job(job_id)).get("state") in TERMINAL_STATES
            for points, last in self._pages(job_id, name, after):
                after = last  # the next round resumes after what was read
                yield from points
            if ended:
                return
            time.sleep(poll_interval)


def _template(name: str) -> str:
    return f"{API_PREFIX}/templates/{segment(name, 'template name')}"


def _job(job_id: str) -> str:
    return f"{API_PREFIX}/jobs/{segment(job_id, 'job id')}"
