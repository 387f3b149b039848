"""Jobs: submit, inspect, cancel, rerun, wait for, and read the logs of."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

from plinth.client._errors import NotFoundError, PlinthError
from plinth.client._http import API_PREFIX, Transport, segment
from plinth.client._types import TERMINAL_STATES, Event, Job, LogChunk, LogLine, Replica


class WaitTimeoutError(PlinthError):
    """A job did not finish within the time a caller was willing to wait."""

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        super().__init__(
            f"job {job.get('id')} is still {job.get('state')} after {timeout:g}s of waiting"
        )


# After a job has ended, how long to wait for its logs to be reported complete
# before giving up (a replica that never started has no log that could complete).
_LOG_GRACE_S = 5.0


class Jobs:
    """Jobs of the caller's group (every group for an admin)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def submit(self, spec: dict[str, Any]) -> Job:
        """Submit a job spec (the API's JobSpec, e.g. a parsed YAML file); returns the new job.

        A spec's code must already be ``{file: sha256}`` or ``{git, ref}``; use
        :meth:`Files.upload` for a directory.
        """
        return cast(Job, self._t.json("POST", f"{API_PREFIX}/jobs", json=spec))

    def list(
        self, *, state: str | None = None, group: str | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs, newest first, optionally filtered by ``state`` and ``group``."""
        params = {"state": state, "group": group, "limit": limit}
        return cast("list[Job]", self._t.json("GET", f"{API_PREFIX}/jobs", params=params))

    def get(self, job_id: str) -> Job:
        return cast(Job, self._t.json("GET", f"{_job(job_id)}"))

    def explain(self, job_id: str) -> dict[str, Any]:
        """Why the job waits: ``{"text", "position", "score", "outcome", "reason", ...}``."""
        return cast("dict[str, Any]", self._t.json("GET", f"{_job(job_id)}/explain"))

    def queue(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Pending workloads in the scheduler's order, each with its score breakdown."""
        return cast(
            "list[dict[str, Any]]",
            self._t.json("GET", f"{API_PREFIX}/queue", params={"limit": limit}),
        )

    def history(self, *, since_s: float) -> list[dict[str, Any]]:
        """The workloads submitted in the last ``since_s`` seconds as a scheduler trace
        (the JSONL objects of ``plinth scheduler simulate``, cluster first; admins)."""
        return cast(
            "list[dict[str, Any]]",
            self._t.json("GET", f"{API_PREFIX}/queue/history", params={"since_s": since_s}),
        )

    def cancel(self, job_id: str) -> Job:
        """Cancel a job; a finished job is returned unchanged."""
        return cast(Job, self._t.json("POST", f"{_job(job_id)}/cancel"))

    def rerun(self, job_id: str) -> Job:
        """Submit a new job with the same spec and the same recorded code (commit or file)."""
        return cast(Job, self._t.json("POST", f"{_job(job_id)}/rerun"))

    def events(self, job_id: str) -> list[Event]:
        """The job's state changes, oldest first, each with its reason."""
        return cast("list[Event]", self._t.json("GET", f"{_job(job_id)}/events"))

    def replicas(self, job_id: str) -> list[Replica]:
        """One row per role, replica and attempt (every attempt is kept)."""
        return cast("list[Replica]", self._t.json("GET", f"{_job(job_id)}/replicas"))

    def log_keys(
        self,
        job_id: str,
        *,
        role: str | None = None,
        replica: int | None = None,
        attempt: int | None = None,
    ) -> list[tuple[str, int, int]]:
        """The ``(role, replica, attempt)`` of every log the job has, sorted, optionally
        filtered by role, replica index and attempt (``None`` = all): what
        :meth:`follow_logs` reads. Empty when nothing matches (or nothing started yet).
        """
        return sorted(
            {
                (str(r["role"]), int(r["replica"]), int(r.get("attempt", 0)))
                for r in self.replicas(job_id)
                if (role is None or r["role"] == role)
                and (replica is None or r["replica"] == replica)
                and (attempt is None or r.get("attempt", 0) == attempt)
            }
        )

    def logs(
        self,
        job_id: str,
        role: str,
        replica: int,
        *,
        attempt: int | None = None,
        offset: int = 0,
    ) -> LogChunk:
        """One attempt's log (the latest when ``attempt`` is None) from byte ``offset``."""
        response = self._t.request(
            "GET",
            f"{_job(job_id)}/logs/{segment(role, 'role')}/{segment(replica, 'replica')}",
            params={"attempt": attempt, "offset": offset},
        )
        next_offset = _int_header(
            response.headers.get("X-Log-Offset"), offset + len(response.content)
        )
        complete = response.headers.get("X-Log-Complete", "false").strip().lower() == "true"
        return LogChunk(data=response.content, offset=next_offset, complete=complete)

    def wait(self, job_id: str, *, timeout: float | None = None, poll_interval: float = 0.2) -> Job:
        """Block until the job reaches a terminal state and return it.

        ``timeout`` and ``poll_interval`` are in seconds; on timeout raises
        :class:`WaitTimeoutError` (the job keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.get("state") in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(job, cast(float, timeout))
            time.sleep(poll_interval)

    def follow_logs(
        self,
        job_id: str,
        *,
        role: str | None = None,
        replica: int | None = None,
        attempt: int | None = None,
        poll_interval: float = 0.25,
        timeout: float | None = None,
    ) -> Iterator[LogLine]:
        """Yield the output lines of the job's replicas as they are written, until it ends.

        Covers every role, replica and attempt unless filtered. Lines of one
        attempt come in order; lines of different replicas interleave as they
        arrive. Returns once the job has ended and every selected log is
        complete. ``timeout`` (seconds) raises :class:`WaitTimeoutError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        offsets: dict[tuple[str, int, int], int] = {}
        partial: dict[tuple[str, int, int], bytes] = {}
        complete: set[tuple[str, int, int]] = set()
        ended_at: float | None = None
        while True:
            job = self.get(job_id)
            ended = job.get("state") in TERMINAL_STATES
            if ended and ended_at is None:
                ended_at = time.monotonic()
            keys = self.log_keys(job_id, role=role, replica=replica, attempt=attempt)
            progressed = False
            for key in keys:
                if key in complete:
                    continue
                r_role, r_replica, r_attempt = key
                try:
                    chunk = self.logs(
                        job_id, r_role, r_replica, attempt=r_attempt, offset=offsets.get(key, 0)
                    )
                except NotFoundError:
                    # Not started yet: no log file. Once the job has ended it never will.
                    if ended:
                        complete.add(key)
                    continue
                offsets[key] = chunk.offset
                if chunk.data:
                    progressed = True
                    buffer = partial.pop(key, b"") + chunk.data
                    *lines, rest = buffer.split(b"\n")
                    for raw in lines:
                        yield LogLine(r_role, r_replica, r_attempt, _decode(raw))
                    if rest:
                        partial[key] = rest
                if chunk.complete:
                    complete.add(key)
                    rest = partial.pop(key, b"")
                    if rest:
                        yield LogLine(r_role, r_replica, r_attempt, _decode(rest))
            if ended and (
                all(k in complete for k in keys)
                or time.monotonic() - cast(float, ended_at) > _LOG_GRACE_S
            ):
                for key in sorted(partial):
                    yield LogLine(*key, _decode(partial[key]))
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(job, cast(float, timeout))
            if not progressed:
                time.sleep(poll_interval)


def _job(job_id: str) -> str:
    """The job's URL path (its id percent-encoded as one segment; empty ids refused)."""
    return f"{API_PREFIX}/jobs/{segment(job_id, 'job id')}"


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def _int_header(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
