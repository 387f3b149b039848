"""Reclaim holds: the capacity a reclaim frees is kept for the claimant that caused it.

Without them a reclaim thrashes under overcommitted quotas: the first victim to
stop frees its capacity, the victim itself (back in the queue with its old queue
time, so ranked high) borrows it again in the next cycle, and the claimant's
reclaim preempts it again -- dozens of times per reclaim. Free capacity the
claimant counted on beside its victims' can be taken just as well.

So when a cycle preempts victims for a claimant it records a hold
(:class:`~plinth.scheduler.model.ReclaimHold`) with the claimant's *plan* (where
it fits once the victims are gone), and the snapshot carries the holds
(``Snapshot.reclaim_holds``, persisted by the caller). Every cycle, this cycle
included:

1. drops the holds whose claimant is no longer pending or that are older than
   ``reclaim_hold_s`` (``Decisions.released_holds`` says why);
2. for each remaining hold, takes off each node of the plan what the plan needs
   there beyond what victims still stopping hold (they hold it themselves), and
   counts the claimant's demand beyond its stopping victims' against its group's
   quota, so nobody else can place or borrow against it;
3. lifts the claimant's own hold while the claimant is processed, and puts it
   back unless the claimant was admitted (then the hold is released).

A claimant that preempts more victims gets a new hold (all its victims, a new
plan) that replaces the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plinth.scheduler.model import ReclaimHold, Snapshot, Victim, Workload
from plinth.scheduler.placement import NodePool, replicas_on
from plinth.scheduler.quota import QuotaLedger
from plinth.scheduler.resources import Resources

Vec = tuple[float, float, float]


def base_id(running_id: str) -> str:
    """The workload id of a running entry (``<id>@<attempt>`` for an older attempt)."""
    return running_id.split("@", 1)[0]


@dataclass(slots=True)
class _Held:
    """One hold as applied to this cycle's pool and ledger."""

    hold: ReclaimHold
    nodes: dict[int, Vec] = field(default_factory=dict)  # node index -> amount taken
    quota: Vec = (0.0, 0.0, 0.0)  # counted against the claimant's group
    applied: bool = False


class ClaimantHolds:
    """The cycle's reclaim holds, applied to its node pool and quota ledger."""

    def __init__(self, snapshot: Snapshot, pool: NodePool, ledger: QuotaLedger,
                 hold_s: float) -> None:
        self.pool, self.ledger = pool, ledger
        self.released: dict[str, str] = {}
        self.held: dict[str, _Held] = {}
        self._stopping: dict[str, Workload] = {}
        if not snapshot.reclaim_holds:
            return
        pending = {w.id: w for w in snapshot.pending}
        self._stopping = {base_id(w.id): w for w in snapshot.running if w.preempting}
        for h in snapshot.reclaim_holds:
            w = pending.get(h.claimant)
            if w is None:
                self.released[h.claimant] = "its claimant is no longer pending"
            elif snapshot.now - h.since > hold_s:
                self.released[h.claimant] = (
                    f"held for {snapshot.now - h.since:.0f}s, longer than reclaim_hold_s;"
                    " the claimant gave up")
            elif h.group not in ledger.groups:
                self.released[h.claimant] = f"group {h.group} no longer exists"
            else:
                self.held[h.claimant] = self._measure(h, w, self._stopping)
                self._apply(self.held[h.claimant])

    def _measure(self, h: ReclaimHold, w: Workload, stopping: dict[str, Workload]) -> _Held:
        """What `h` takes now: the plan beyond what its victims still hold."""
        held = _Held(h)
        still = [stopping[v.id] for v in h.victims if v.id in stopping]
        occupied: dict[int, list[float]] = {}
        for v in still:
            for i, u in self.pool.usage_of(v).items():
                o = occupied.setdefault(i, [0.0, 0.0, 0.0])
                for k in range(3):
                    o[k] += u[k]
        for name, r in h.plan.items():
            i = self.pool.index.get(name)
            if i is None:
                continue  # a node gone from the inventory holds nothing
            t, o = r.as_tuple(), occupied.get(i, (0.0, 0.0, 0.0))
            amount = (max(0.0, t[0] - o[0]), max(0.0, t[1] - o[1]), max(0.0, t[2] - o[2]))
            if any(amount):
                held.nodes[i] = amount
        left = list(w.total_t)
        for v in still:
            for k in range(3):
                left[k] -= v.total_t[k]
        held.quota = (max(0.0, left[0]), max(0.0, left[1]), max(0.0, left[2]))
        return held

    def claims(self, workload_id: str) -> bool:
        """Whether capacity is held for this pending workload."""
        return workload_id in self.held

    def hold_of(self, workload_id: str) -> ReclaimHold | None:
        held = self.held.get(workload_id)
        return None if held is None else held.hold

    def victims_of_others(self, workload_id: str) -> set[str]:
        """Ids of the victims held for claimants other than this one."""
        return {v.id for c, h in self.held.items() if c != workload_id for v in h.hold.victims}

    def groups(self) -> dict[str, str]:
        """Group -> its claimant, for every group with a hold."""
        return {h.hold.group: c for c, h in self.held.items()}

    def record(self, claimant: Workload, hold: ReclaimHold, stopping: list[Workload]) -> None:
        """A hold made in this cycle (it replaces the claimant's earlier one, which is
        lifted while the claimant is processed); `stopping`: its victims, which still
        hold their resources. Applied when the claimant's processing ends (``settle``)."""
        self.held[claimant.id] = self._measure(
            hold, claimant, {**self._stopping, **{base_id(v.id): v for v in stopping}})

    def lift(self, workload_id: str) -> None:
        """Give the claimant's held capacity back to the pool and ledger while it is
        processed (only the claimant sees it)."""
        held = self.held.get(workload_id)
        if held is not None and held.applied:
            for i, a in held.nodes.items():
                self.pool._change(i, a[0], a[1], a[2], restore=True)
            self.ledger.unreserve(held.hold.group, held.quota)
            held.applied = False

    def settle(self, workload_id: str, admitted: bool) -> None:
        """After the claimant was processed: release its hold if it was admitted
        (its capacity is now its own, or free for others), else hold it again."""
        held = self.held.get(workload_id)
        if held is None:
            return
        if admitted:
            del self.held[workload_id]
            self.released[workload_id] = "its claimant was admitted"
            self.pool.failed.clear()  # capacity beyond the claimant's may be free now
        else:
            self._apply(held)

    def _apply(self, held: _Held) -> None:
        if held.applied:
            return
        for i, a in held.nodes.items():
            self.pool._change(i, -a[0], -a[1], -a[2])
        self.ledger.reserve(held.hold.group, held.quota)
        held.applied = True


def new_hold(claimant: Workload, victims: list[Workload], plan: list[int], pool: NodePool,
             now: float, earlier: ReclaimHold | None) -> ReclaimHold:
    """The hold to record after ``victims`` were chosen for ``claimant``, which then
    fits on ``plan`` (node index per replica, as ``NodePool.place`` gives): the
    earlier hold's victims plus the new ones, and the new plan."""
    known = {v.id: v for v in earlier.victims} if earlier is not None else {}
    for v in victims:
        vid = base_id(v.id)
        if vid not in known:
            known[vid] = Victim(vid, {pool.names[i]: Resources.from_tuple(t)
                                      for i, t in pool.usage_of(v).items()})
    where = {pool.names[i]: Resources.from_tuple(t) for i, t in replicas_on(plan, claimant).items()}
    return ReclaimHold(claimant=claimant.id, group=claimant.group,
                       victims=tuple(known.values()), since=now, plan=where)
