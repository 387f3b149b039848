"""Which workloads a caller may see: one rule for jobs, notebooks and deployments.

Admins see everything, members their group's, and a workload-scoped token (the one a
replica gets) only its own workload, whatever group it runs in (an admin may have
submitted it into another group than the token user's). A workload one may not see is
"not found", never "forbidden": its existence is not told either.
"""

from __future__ import annotations

from typing import Any

from plinth.services.auth import Principal
from plinth.services.errors import NotFound
from plinth.store.models import Workload

__all__ = ["may_see", "visible_workload", "where_visible"]


def may_see(p: Principal, w: Workload) -> bool:
    if p.workload_id is not None:
        return w.id == p.workload_id
    return p.admin or w.group_id == p.group_id


def visible_workload(p: Principal, w: Workload | None, kind: str, ident: str) -> Workload:
    """`w` when it is a `kind` workload `p` may see; else NotFound naming `ident`."""
    if w is None or w.kind != kind or not may_see(p, w):
        raise NotFound(f"{kind} {ident!r} not found")
    return w


def where_visible(p: Principal, q: Any) -> Any:
    """`q` (a select of Workload) narrowed to the rows `p` may see."""
    if p.workload_id is not None:
        return q.where(Workload.id == p.workload_id)
    if not p.admin:
        return q.where(Workload.group_id == p.group_id)
    return q
