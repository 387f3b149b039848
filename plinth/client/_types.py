"""Shapes of the JSON the API returns (see docs/cli.md and the server's /openapi.json).

These are ``TypedDict``s, not classes with behaviour: the SDK hands back the
server's JSON as plain dicts (easy to print, serialise and compare), and
these types document and check the fields callers rely on. The server may
add fields; they are passed through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

#: States after which a job never changes again.
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})


class Resources(TypedDict, total=False):
    """Per-replica or quota amounts: ``cpu`` cores, ``memory`` MiB, ``gpu`` devices."""

    cpu: float
    memory: int
    gpu: int


class Group(TypedDict, total=False):
    name: str
    quota: Resources
    borrow_limit: Resources | None
    lend_limit: Resources | None
    created_at: str


class User(TypedDict, total=False):
    name: str
    group: str
    admin: bool
    cap: Resources | None
    created_at: str


class CreatedUser(TypedDict):
    """A new user and its token; the plaintext token is shown only this once."""

    user: User
    token: str


class Node(TypedDict, total=False):
    name: str
    capacity: Resources
    used: Resources


class FileInfo(TypedDict, total=False):
    """An uploaded code archive, content-addressed by ``sha256``; ``size`` in bytes."""

    sha256: str
    size: int
    created_at: str


class Job(TypedDict, total=False):
    id: str
    name: str
    group: str
    user: str
    state: str
    reason: str | None
    spec: dict[str, Any]
    code: dict[str, Any] | None
    attempt: int
    created_at: str
    admitted_at: str | None
    started_at: str | None
    finished_at: str | None
    max_runtime: float
    retries: int


class Event(TypedDict, total=False):
    time: str
    type: str
    reason: str | None


class Replica(TypedDict, total=False):
    """One attempt of one replica of one role."""

    role: str
    replica: int
    attempt: int
    state: str
    exit_code: int | None
    node: str | None
    host: str | None
    port: int | None
    log_size: int


@dataclass(frozen=True)
class LogChunk:
    """Bytes of one attempt's log from some offset.

    ``offset`` is the byte offset to ask for next; ``complete`` is true once
    the attempt has ended and every byte has been returned.
    """

    data: bytes
    offset: int
    complete: bool

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class LogLine:
    """One line (without its newline) of one replica attempt's output."""

    role: str
    replica: int
    attempt: int
    text: str
