"""Response models of the REST API (request models live in plinth.services.specs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "CodeOut",
    "EventOut",
    "FileOut",
    "GroupOut",
    "Health",
    "JobOut",
    "NodeOut",
    "Quantity",
    "ReplicaOut",
    "TokenOut",
    "UserCreated",
    "UserOut",
]


class Quantity(BaseModel):
    cpu: float = Field(description="cores")
    memory: int = Field(description="MiB")
    gpu: int = Field(description="whole devices")


class GroupOut(BaseModel):
    name: str
    quota: Quantity
    borrow_limit: Quantity | None
    lend_limit: Quantity | None
    created_at: datetime


class UserOut(BaseModel):
    name: str
    group: str
    admin: bool
    cap: Quantity | None
    created_at: datetime


class UserCreated(BaseModel):
    user: UserOut
    token: str = Field(description="the plaintext token; shown once, stored hashed")


class TokenOut(BaseModel):
    token: str


class WhoAmI(UserOut):
    workload_id: str | None = Field(
        default=None, description="set when the token is scoped to one workload"
    )


class NodeOut(BaseModel):
    name: str
    address: str
    capacity: Quantity
    used: Quantity


class FileOut(BaseModel):
    sha256: str
    size: int = Field(description="bytes")
    created_at: datetime


class CodeOut(BaseModel):
    kind: str = Field(description="file | git")
    sha256: str | None = None
    url: str | None = None
    ref: str | None = None
    commit: str | None = None


class JobOut(BaseModel):
    id: str
    kind: str
    name: str
    group: str
    user: str
    state: str
    reason: str
    spec: dict[str, Any] = Field(description="the spec as submitted, normalised")
    code: CodeOut | None
    attempt: int = Field(description="0-based index of the current attempt")
    failures: int = Field(description="failed attempts so far")
    retries: int
    max_runtime: float = Field(description="seconds")
    demand: Quantity = Field(description="total resources of all replicas")
    created_at: datetime
    queued_at: datetime
    admitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class EventOut(BaseModel):
    time: datetime
    type: str
    reason: str
    data: dict[str, Any] | None = None


class ReplicaOut(BaseModel):
    role: str
    replica: int
    attempt: int
    state: str = Field(description="launching | running | succeeded | failed | stopped | lost")
    exit_code: int | None
    node: str
    host: str
    port: int
    gpus: list[int]
    log_size: int = Field(description="bytes written to this attempt's log so far")
    started_at: datetime | None
    finished_at: datetime | None


class Health(BaseModel):
    status: str
