"""Response models of the REST API (request models live in plinth.services.specs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "CodeOut",
    "EventOut",
    "ExpansionOut",
    "ExplainOut",
    "FileOut",
    "GroupOut",
    "GroupStatusOut",
    "GroupUserOut",
    "Health",
    "JobOut",
    "NodeOut",
    "Quantity",
    "QueueEntry",
    "ReplicaOut",
    "ReservationOut",
    "ScoreOut",
    "TokenOut",
    "UserCreated",
    "UserOut",
]


class Quantity(BaseModel):
    cpu: float = Field(description="cores")
    memory: int = Field(description="MiB")
    gpu: int = Field(description="whole devices")


class GroupStatusOut(BaseModel):
    """The group's quota picture now (from the scheduler's ledger)."""

    nominal: Quantity = Field(description="effective nominal quota: quota + active expansions")
    expansion: Quantity = Field(description="the part of nominal from active expansions")
    used: Quantity = Field(description="held by the group's running workloads")
    borrowed: Quantity = Field(description="used beyond its nominal quota, lent by others")
    lent: Quantity = Field(description="its idle quota now used by other groups")
    lendable: Quantity = Field(description="idle quota still available to borrowers")
    guaranteed: Quantity = Field(description="quota never lent (nominal - lend_limit)")


class GroupUserOut(BaseModel):
    name: str
    cap: Quantity | None = Field(description="personal quota inside the group; null: none")
    used: Quantity


class ExpansionOut(BaseModel):
    id: int
    group: str | None
    user: str | None
    add: Quantity
    start: datetime
    end: datetime
    reason: str
    granted_by: str
    created_at: datetime
    status: str = Field(description="scheduled | active | expired")


class GroupOut(BaseModel):
    name: str
    quota: Quantity
    borrow_limit: Quantity | None
    lend_limit: Quantity | None
    max_job: dict[str, float] | None = Field(
        default=None,
        description="admin cap on one job's total demand; only the dimensions listed are capped",
    )
    max_runtime: float | None = Field(default=None, description="longest max_runtime, seconds")
    max_workloads_per_user: int | None = None
    created_at: datetime
    status: GroupStatusOut | None = None
    users: list[GroupUserOut] = Field(default_factory=list)
    expansions: list[ExpansionOut] = Field(
        default_factory=list, description="active expansions of the group and its users"
    )


class ReservationOut(BaseModel):
    id: str
    group: str | None
    user: str | None
    resources: Quantity
    node: str | None
    start: datetime
    end: datetime
    reason: str
    created_by: str
    created_at: datetime


class ScoreOut(BaseModel):
    total: float = Field(description="sum of factor x weight")
    factors: dict[str, float] = Field(description="each factor in [0, 1]")
    weights: dict[str, float]


class QueueEntry(BaseModel):
    position: int = Field(description="1-based, over the whole queue")
    id: str
    name: str
    kind: str
    group: str
    user: str
    priority: str
    queued_at: datetime
    waiting_s: float
    requests: Quantity
    max_runtime: float = Field(description="seconds")
    score: ScoreOut
    outcome: str = Field(description="fit (starts next cycle) | preempt | wait")
    reason: str


class ExplainOut(BaseModel):
    id: str
    state: str
    position: int | None
    score: ScoreOut | None
    outcome: str | None
    reason: str
    text: str = Field(description="the explanation, several lines")


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
    priority: str = "normal"
    preemptions: int = Field(default=0, description="times it was preempted (reclaimed)")
    kind: str
    name: str
    group: str
    user: str
    state: str
    reason: str
    spec: dict[str, Any] = Field(description="the spec as submitted, normalised")
    template: dict[str, Any] | None = Field(
        default=None,
        description="for a job expanded from a template: {name, version, params} (every "
        "parameter's resolved value); spec is then the expanded spec it ran",
    )
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
