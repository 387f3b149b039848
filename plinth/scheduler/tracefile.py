"""The trace format of ``plinth scheduler simulate``: JSON Lines, one object per line.

A trace is a cluster (optional: a policy file may give it instead) and workloads
arriving over time. Units: seconds, cores, MiB, whole GPUs.

```
{"type": "cluster",
 "nodes":  [{"name": "n1", "cpu": 64, "memory": 262144, "gpu": 0}, ...],
 "groups": [{"name": "ads", "quota": {"cpu": 32, "memory": 131072, "gpu": 8},
             "borrow_limit": {"cpu": 8}, "lend_limit": null,
             "max_job": null, "max_runtime": null, "max_workloads_per_user": null}, ...]}
{"type": "workload", "id": "ads-1", "group": "ads", "user": "ann", "arrival": 0.0,
 "runtime": 1800.0, "max_runtime": 3600.0, "kind": "job", "priority": "normal",
 "roles": {"worker": {"replicas": 2, "resources": {"cpu": 4, "memory": 8192, "gpu": 1}}},
 "seq": 1}
```

* ``cluster`` (at most one, first): ``nodes`` and quota ``groups``; in a limit
  (``borrow_limit``, ``lend_limit``, ``max_job``) a resource left out is not
  capped, as on the server; ``null`` (or absent): no limit.
* ``workload``: submitted at ``arrival``; runs ``runtime`` seconds if never
  preempted, stopped at ``max_runtime`` (declared) if longer. ``kind``
  (default ``job``), ``priority`` (default ``normal``) and ``seq`` (submission
  order, the last tie-breaker; default: its line number) are optional.

Lines that are empty or start with ``#`` are skipped. Every error names its line.
This module parses and writes text; reading files is the caller's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from plinth.scheduler.model import Group, Node, Role, Workload
from plinth.scheduler.resources import RESOURCE_NAMES, Resources
from plinth.scheduler.trace import TraceItem

__all__ = ["Trace", "TraceError", "dump_trace", "load_trace"]

_UNCAPPED = 2**53  # a resource a limit leaves out (as plinth.services.scheduling)


class TraceError(ValueError):
    """A trace line that is not valid; the message names the line and what to fix."""


@dataclass(frozen=True)
class Trace:
    """A parsed trace: the cluster (empty when the trace gives none) and its workloads
    sorted by arrival, then ``seq``."""

    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]
    items: list[TraceItem]


def _number(v: Any, what: str, *, integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {v!r}")
    if integer and v != int(v):
        raise ValueError(f"{what} must be a whole number, got {v!r}")
    return v


def _resources(q: Any, what: str) -> Resources:
    if not isinstance(q, Mapping):
        raise TypeError(f"{what} must be an object with cpu, memory (MiB), gpu")
    bad = set(q) - set(RESOURCE_NAMES)
    if bad:
        raise ValueError(f"{what}: unknown resource {min(bad)!r}; use cpu, memory, gpu")
    return Resources(float(_number(q.get("cpu", 0), f"{what}.cpu")),
                     int(_number(q.get("memory", 0), f"{what}.memory", integer=True)),
                     int(_number(q.get("gpu", 0), f"{what}.gpu", integer=True)))


def _limit(q: Any, what: str) -> Resources | None:
    if q is None:
        return None
    r = _resources(q, what)
    return Resources(r.cpu if "cpu" in q else _UNCAPPED,
                     r.memory if "memory" in q else _UNCAPPED,
                     r.gpu if "gpu" in q else _UNCAPPED)


def _limit_out(r: Resources | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {k: v for k, v in _res_out(r).items() if v < _UNCAPPED}


def _res_out(r: Resources) -> dict[str, Any]:
    return {"cpu": r.cpu, "memory": r.memory, "gpu": r.gpu}


def _node(d: Any) -> Node:
    if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
        raise TypeError("each node needs a name, cpu, memory (MiB) and gpu")
    return Node(d["name"], _resources({k: v for k, v in d.items() if k != "name"},
                                      f"node {d['name']}"))


def group_from_dict(d: Any) -> Group:
    """A quota group from its trace (or policy file) form."""
    if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
        raise TypeError("each group needs a name and a quota")
    name = d["name"]
    runtime = d.get("max_runtime")
    per_user = d.get("max_workloads_per_user")
    return Group(
        name=name, nominal=_resources(d.get("quota", {}), f"group {name}: quota"),
        lend_limit=_limit(d.get("lend_limit"), f"group {name}: lend_limit"),
        borrow_limit=_limit(d.get("borrow_limit"), f"group {name}: borrow_limit"),
        max_job=_limit(d.get("max_job"), f"group {name}: max_job"),
        max_runtime_s=None if runtime is None else float(_number(runtime, "max_runtime")),
        max_workloads_per_user=None if per_user is None else int(
            _number(per_user, "max_workloads_per_user", integer=True)),
    )


def _workload(d: Mapping[str, Any], default_seq: int) -> TraceItem:
    for key in ("id", "group", "user"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise ValueError(f"{key!r} must be a non-empty string")
    roles_in = d.get("roles")
    if not isinstance(roles_in, Mapping) or not roles_in:
        raise ValueError("'roles' must map role names to {replicas, resources}")
    roles = []
    for name, r in roles_in.items():
        if not isinstance(r, Mapping):
            raise TypeError(f"role {name!r} must be an object")
        replicas = int(_number(r.get("replicas", 1), f"role {name}.replicas", integer=True))
        if replicas < 1:
            raise ValueError(f"role {name}.replicas must be >= 1")
        roles.append(Role(str(name), replicas, _resources(r.get("resources"),
                                                          f"role {name}.resources")))
    arrival = float(_number(d.get("arrival"), "arrival"))
    max_runtime = float(_number(d.get("max_runtime"), "max_runtime"))
    if max_runtime <= 0:
        raise ValueError("max_runtime must be > 0 seconds")
    runtime = float(_number(d.get("runtime", max_runtime), "runtime"))
    w = Workload(id=d["id"], group=d["group"], user=d["user"], roles=tuple(roles),
                 max_runtime_s=max_runtime, queue_time=arrival,
                 kind=str(d.get("kind", "job")), priority=str(d.get("priority", "normal")),
                 seq=int(d.get("seq", default_seq)))
    return TraceItem(w, arrival, runtime)


def load_trace(lines: Iterable[str]) -> Trace:
    """Parse a trace (see the module docstring); TraceError names the bad line."""
    nodes: tuple[Node, ...] = ()
    groups: tuple[Group, ...] = ()
    items: list[TraceItem] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise TypeError("each line must be a JSON object")
            kind = d.get("type", "workload")
            if kind == "cluster":
                if items or nodes or groups:
                    raise ValueError("the cluster line must come first, once")
                nodes = tuple(_node(x) for x in d.get("nodes") or ())
                groups = tuple(group_from_dict(x) for x in d.get("groups") or ())
            elif kind == "workload":
                it = _workload(d, default_seq=n)
                if it.workload.id in seen:
                    raise ValueError(f"workload id {it.workload.id!r} appears twice")
                seen.add(it.workload.id)
                items.append(it)
            else:
                raise ValueError(f"unknown type {kind!r}; use 'cluster' or 'workload'")
        except (ValueError, TypeError) as e:
            raise TraceError(f"trace line {n}: {e}") from None
    items.sort(key=lambda it: (it.arrival, it.workload.seq))
    return Trace(nodes, groups, items)


def group_to_dict(g: Group) -> dict[str, Any]:
    return {"name": g.name, "quota": _res_out(g.nominal),
            "borrow_limit": _limit_out(g.borrow_limit), "lend_limit": _limit_out(g.lend_limit),
            "max_job": _limit_out(g.max_job), "max_runtime": g.max_runtime_s,
            "max_workloads_per_user": g.max_workloads_per_user}


def dump_trace(items: Iterable[TraceItem], nodes: Iterable[Node] = (),
               groups: Iterable[Group] = ()) -> Iterator[str]:
    """The lines (without newlines) of a trace; a cluster line first when given."""
    nodes, groups = tuple(nodes), tuple(groups)
    if nodes or groups:
        yield json.dumps({"type": "cluster",
                          "nodes": [{"name": x.name, **_res_out(x.capacity)} for x in nodes],
                          "groups": [group_to_dict(g) for g in groups]})
    for it in items:
        w = it.workload
        yield json.dumps({
            "type": "workload", "id": w.id, "group": w.group, "user": w.user,
            "arrival": it.arrival, "runtime": it.actual_s, "max_runtime": w.max_runtime_s,
            "kind": w.kind, "priority": w.priority,
            "roles": {r.name: {"replicas": r.replicas, "resources": _res_out(r.resources)}
                      for r in w.roles},
            "seq": w.seq,
        })
