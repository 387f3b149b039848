"""Builders for scheduler tests, in Kueue's style:
``job("a").group("ads").gpus(2).replicas(2).build()``.

Memory is in GiB in the builders (MiB in the core) to keep cases short.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plinth.scheduler import (
    Expansion,
    Group,
    Node,
    Reservation,
    Resources,
    Role,
    Snapshot,
    UsageRecord,
    User,
    Workload,
)

GIB = 1024
NOW = 100_000.0
HOUR = 3600.0


def res(cpu: float = 0, mem: float = 0, gpu: int = 0) -> Resources:
    """Resources with memory in GiB."""
    return Resources(cpu, int(mem * GIB), gpu)


def node(name: str, cpu: float = 8, mem: float = 32, gpu: int = 0) -> Node:
    return Node(name, res(cpu, mem, gpu))


def group(name: str, cpu: float = 0, mem: float = 0, gpu: int = 0, *,
          lend: Resources | None = None, borrow: Resources | None = None,
          max_job: Resources | None = None, max_runtime: float | None = None,
          per_user: int | None = None) -> Group:
    return Group(name, res(cpu, mem, gpu), lend_limit=lend, borrow_limit=borrow,
                 max_job=max_job, max_runtime_s=max_runtime, max_workloads_per_user=per_user)


@dataclass
class JobBuilder:
    """Fluent builder of a :class:`Workload`; ``build()`` gives the value."""

    id: str
    _group: str = "ads"
    _user: str | None = None
    _roles: list[tuple[str, int, Resources]] = field(default_factory=list)
    _cpu: float = 1
    _mem: float = 1
    _gpu: int = 0
    _replicas: int = 1
    _runtime: float = HOUR
    _queued: float = NOW
    _priority: str = "normal"
    _seq: int = 0
    _start: float | None = None
    _nodes: tuple[str, ...] | None = None
    _reservation: str | None = None
    _preempting: bool = False
    _kind: str = "job"

    def group(self, g: str) -> JobBuilder:
        self._group = g
        return self

    def user(self, u: str) -> JobBuilder:
        self._user = u
        return self

    def cpu(self, c: float) -> JobBuilder:
        self._cpu = c
        return self

    def mem(self, gib: float) -> JobBuilder:
        self._mem = gib
        return self

    def gpus(self, g: int) -> JobBuilder:
        self._gpu = g
        return self

    def replicas(self, n: int) -> JobBuilder:
        self._replicas = n
        return self

    def role(self, name: str, replicas: int, cpu: float = 1, mem: float = 1,
             gpu: int = 0) -> JobBuilder:
        self._roles.append((name, replicas, res(cpu, mem, gpu)))
        return self

    def runtime(self, seconds: float) -> JobBuilder:
        self._runtime = seconds
        return self

    def queued(self, t: float) -> JobBuilder:
        self._queued = t
        return self

    def priority(self, p: str) -> JobBuilder:
        self._priority = p
        return self

    def seq(self, n: int) -> JobBuilder:
        self._seq = n
        return self

    def kind(self, k: str) -> JobBuilder:
        self._kind = k
        return self

    def booked(self, reservation: str) -> JobBuilder:
        self._reservation = reservation
        return self

    def running(self, *nodes: str, start: float = NOW - 600) -> JobBuilder:
        """Running since ``start`` with one node name per replica (in role order)."""
        self._start = start
        self._nodes = nodes
        return self

    def preempting(self) -> JobBuilder:
        self._preempting = True
        return self

    def build(self) -> Workload:
        roles = [Role(n, r, rs) for n, r, rs in self._roles] or [
            Role("main", self._replicas, res(self._cpu, self._mem, self._gpu))
        ]
        placements = None
        if self._nodes is not None:
            placements, k = {}, 0
            for r in roles:
                placements[r.name] = tuple(self._nodes[k : k + r.replicas])
                k += r.replicas
            assert k == len(self._nodes), "one node per replica"
        return Workload(
            id=self.id, group=self._group, user=self._user or f"{self._group}-user",
            roles=tuple(roles), max_runtime_s=self._runtime, queue_time=self._queued,
            kind=self._kind, priority=self._priority, seq=self._seq, start_time=self._start,
            placements=placements, reservation=self._reservation, preempting=self._preempting,
        )


def job(wid: str) -> JobBuilder:
    return JobBuilder(wid)


def snapshot(
    *, nodes: list[Node], groups: list[Group], running: list[JobBuilder] = (),
    pending: list[JobBuilder] = (), users: list[User] = (), expansions: list[Expansion] = (),
    reservations: list[Reservation] = (), history: list[UsageRecord] = (), now: float = NOW,
) -> Snapshot:
    return Snapshot(
        now=now, nodes=tuple(nodes), groups=tuple(groups), users=tuple(users),
        expansions=tuple(expansions), reservations=tuple(reservations),
        running=tuple(j.build() for j in running), pending=tuple(j.build() for j in pending),
        usage_history=tuple(history),
    )
