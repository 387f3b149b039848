"""``plinth job explain``: why a workload waits, in words and numbers.

The text has three parts: where it stands (position, what it requests), its
score breakdown (each factor, its weight, the weighted sum), and the cycle's
verdict — admitted, waiting for preemptions, or the exact reason it waits,
with the numbers that block it (``group ads: gpu 8/8 in use, borrow limit 4
reached (4 borrowed)``).
"""

from __future__ import annotations

from plinth.scheduler.config import SchedulerConfig
from plinth.scheduler.cycle import format_duration, schedule
from plinth.scheduler.model import Snapshot
from plinth.scheduler.outcomes import Decisions, Outcome
from plinth.scheduler.score import FACTORS

_DEFAULT_CONFIG = SchedulerConfig()


def explain(
    snapshot: Snapshot,
    config: SchedulerConfig = _DEFAULT_CONFIG,
    workload_id: str = "",
    *,
    decisions: Decisions | None = None,
) -> str:
    """The explanation users see for a pending workload.

    Runs a cycle unless ``decisions`` (from :func:`schedule` on the same
    snapshot) is given. Raises ``KeyError`` naming the id when it is not pending.
    """
    w = next((p for p in snapshot.pending if p.id == workload_id), None)
    if w is None:
        raise KeyError(f"workload {workload_id!r} is not pending")
    d = decisions if decisions is not None else schedule(snapshot, config)
    b = d.score(workload_id)
    roles = ", ".join(f"{r.name} {r.replicas}x({r.resources})" for r in w.roles)
    lines = [
        (f"workload {w.id} ({w.kind}, group {w.group}, user {w.user}): pending,"
         f" position {d.position(w.id)} of {len(d.queue)}, waiting"
         f" {format_duration(snapshot.now - w.queue_time)}"),
        (f"  requests {w.total} [{roles}], max_runtime {format_duration(w.max_runtime_s)},"
         f" priority {w.priority}"),
        f"  score {b.total:.3f} = "
        + " + ".join(f"{k} {b.factors[k]:.2f}x{b.weights[k]:g}" for k in FACTORS),
    ]
    outcome = d.outcomes.get(w.id, Outcome.NO_FIT)
    if outcome is Outcome.FIT:
        a = next(a for a in d.admissions if a.workload_id == w.id)
        where = "; ".join(f"{role}: {', '.join(nodes)}" for role, nodes in a.placement.items())
        extra = " (borrowing)" if a.borrows else ""
        extra += " (backfill)" if a.backfill else ""
        lines.append(f"  admitted this cycle{extra} on {where}")
    elif outcome is Outcome.PREEMPT:
        lines.append(f"  waits: {d.reasons.get(w.id, '')}")
    else:
        lines.append(f"  waits: {d.reasons.get(w.id, 'not considered this cycle')}")
    return "\n".join(lines)
