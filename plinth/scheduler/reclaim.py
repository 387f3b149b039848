"""Reclaim: choose which borrowing workloads to preempt so that a group gets
back quota it lent.

Only workloads of groups that currently use more than their nominal quota, in
a resource the claimant needs, are candidates, in the order the cycle gives
(lowest priority class first, then least work lost; with the config key
``reclaim_least_lost_first``, least work lost first). They are removed one at a time until the claimant fits its
own nominal quota and the nodes; then each removed workload but the last is
tried back, and kept running if the claimant still fits (Kueue's fill-back),
so no more is preempted than needed. Workloads already told to stop count as
free first, so a second cycle during the grace period preempts nobody new.
With ``reclaim_after_s`` the cycle asks for victims only for owners that have
waited that long.
"""

from __future__ import annotations

from collections.abc import Sequence

from plinth.scheduler.model import Workload
from plinth.scheduler.placement import NodePool
from plinth.scheduler.quota import Mode, QuotaLedger


def _fits(w: Workload, ledger: QuotaLedger, pool: NodePool) -> bool:
    if ledger.check(w.group, w.total_t).mode is not Mode.NOMINAL:
        return False
    nodes = pool.place(w, memo=False)
    if nodes is None:
        return False
    pool.unplace(w, nodes)
    return True


def _eligible(c: Workload, need: Sequence[int], ledger: QuotaLedger) -> bool:
    borrowing = ledger.borrowing_group(c.group)
    return any(borrowing[k] and c.total_t[k] > 0 for k in need)


def select_victims(
    w: Workload,
    ledger: QuotaLedger,
    pool: NodePool,
    stopping: Sequence[Workload],
    candidates: Sequence[Workload],
) -> list[Workload] | None:
    """Workloads whose removal lets ``w`` start within its group's nominal quota,
    or None if no set of borrowers suffices.

    ``stopping``: workloads already preempted and still running (free to count
    on). ``candidates``: running workloads in preemption order. The ledger and
    pool are left as they were.
    """
    need = [k for k in range(3) if w.total_t[k] > 0]
    # Groups borrowing now; removals only shrink this set, so it is a cheap
    # first filter before the exact check.
    borrowers = {g for g in ledger.groups if any(ledger.borrowing_group(g)[k] for k in need)}
    removed: list[Workload] = []
    ok = False
    for c in list(stopping) + list(candidates):
        if c.group == w.group or (not c.preempting and c.group not in borrowers):
            continue
        if not c.preempting and not _eligible(c, need, ledger):
            continue
        ledger.release(c)
        pool.release(c)
        removed.append(c)
        if _fits(w, ledger, pool):
            ok = True
            break
    if not ok:
        for c in reversed(removed):
            ledger.admit(c)
            pool.occupy(c)
        return None
    victims = [removed[-1]]
    for c in reversed(removed[:-1]):
        ledger.admit(c)
        pool.occupy(c)
        if _fits(w, ledger, pool):
            continue  # not needed: it keeps running
        ledger.release(c)
        pool.release(c)
        victims.append(c)
    # Victims hold their resources until they have stopped.
    for c in victims:
        ledger.admit(c)
        pool.occupy(c)
    return victims
