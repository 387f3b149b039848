"""One scheduling cycle: a snapshot in, decisions out.

Phases, named and timed as in Kueue's scheduler (durations in
``Decisions.phases``, seconds; the caller logs them):

``snapshot``  build the cycle's working state: quota ledger (effective quotas
              at ``now``, usage per group and user), node pool (free capacity,
              reservation holds).
``heads``     static checks per pending workload, and a vectorised quota
              pre-filter: work that does not fit its group's limit at the
              start of the cycle cannot fit later in it (usage only grows), so
              it is set aside with its reason without being looked at again.
``nominate``  score every pending workload.
``order``     sort by score (or queue time for the FIFO baselines), ties by
              queue time then submission order.
``process``   walk the order: user caps, group quota, placement. Work that
              fits only by borrowing waits for a second pass so that work
              within its own quota goes first (Kueue's rule); in that pass
              the groups using least of their nominal quota borrow first. The first
              workload blocked by capacity gets a backfill shadow; one blocked
              by capacity it lent triggers reclaim.
``requeue``   reasons for everything that waits.

The cycle changes only its own working state; nothing happens until the
caller applies the decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from plinth.scheduler.backfill import Release, shadow
from plinth.scheduler.config import Ordering, SchedulerConfig
from plinth.scheduler.holds import ClaimantHolds, base_id, new_hold
from plinth.scheduler.model import Snapshot, Workload
from plinth.scheduler.outcomes import Admission, Decisions, Outcome, Preemption
from plinth.scheduler.placement import Hold, NodePool, replicas_on
from plinth.scheduler.quota import Mode, QuotaLedger
from plinth.scheduler.reclaim import select_victims
from plinth.scheduler.resources import CPU_EPS, RESOURCE_NAMES, Resources
from plinth.scheduler.score import cluster_total, decayed_usage, fair_share_factors, score_pending

#: Float tolerance on cpu only (fractional cores); memory and gpu are whole numbers.
_CPU_EPS3 = np.array([CPU_EPS, 0.0, 0.0])

PHASES: tuple[str, ...] = ("snapshot", "heads", "nominate", "order", "process", "requeue")

_DEFAULT_CONFIG = SchedulerConfig()


def format_duration(seconds: float) -> str:
    """``90`` -> ``1m30s``; ``7260`` -> ``2h01m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def reservation_holds(snapshot: Snapshot, pool: NodePool) -> list[Hold]:
    """A hold per reservation that has not ended, on its node (or one chosen now)."""
    now = snapshot.now
    holds: list[Hold] = []
    held: dict[int, list[float]] = {}
    # Running work by the reservation it uses: one pass, not one per reservation.
    users: dict[str, list[Workload]] = {}
    for w in snapshot.running:
        if w.reservation is not None:
            users.setdefault(w.reservation, []).append(w)
    for r in sorted(snapshot.reservations, key=lambda r: (r.start, r.id)):
        if r.end <= now:
            continue
        want = r.resources.as_tuple()
        used: dict[int, list[float]] = {}
        for w in users.get(r.id, ()):
            for i, v in pool.usage_of(w).items():
                u = used.setdefault(i, [0.0, 0.0, 0.0])
                for k in range(3):
                    u[k] += v[k]
        if r.node is not None:
            i = pool.index.get(r.node, -1)
        elif used:
            i = max(used, key=lambda j: (used[j][2], used[j][0], -j))
        else:
            i = _choose_node(pool, want, held)
        if i < 0:
            continue  # no node can ever hold it; the service layer rejects such bookings
        u = used.get(i, [0.0, 0.0, 0.0])
        amount = tuple(max(0.0, want[k] - u[k]) for k in range(3))
        h = held.setdefault(i, [0.0, 0.0, 0.0])
        for k in range(3):
            h[k] += amount[k]
        holds.append(Hold(node=i, amount=amount, start=r.start, end=r.end,  # type: ignore[arg-type]
                          reservation=r.id, group=r.group, user=r.user))
    return holds


def _choose_node(pool: NodePool, want: tuple[float, float, float],
                 held: dict[int, list[float]]) -> int:
    """Best node for an unpinned reservation: fits its capacity beside other
    holds; prefer one with room now, then the tightest fit."""
    best, best_key = -1, None
    for i, cap in enumerate(pool.cap):
        h = held.get(i, (0.0, 0.0, 0.0))
        if not all(cap[k] - h[k] + (CPU_EPS if k == 0 else 0) >= want[k] for k in range(3)):
            continue
        f = pool.free[i]
        room = all(f[k] - h[k] + (CPU_EPS if k == 0 else 0) >= want[k] for k in range(3))
        key = (0 if room else 1, f[2] - want[2], f[0] - want[0], f[1] - want[1], i)
        if best_key is None or key < best_key:
            best, best_key = i, key
    return best


def _resources_text(v: tuple[float, float, float]) -> str:
    return str(Resources.from_tuple(v))


class _Cycle:
    """Working state of one cycle (private; see :func:`schedule`)."""

    def __init__(self, snapshot: Snapshot, config: SchedulerConfig) -> None:
        self.s = snapshot
        self.cfg = config
        self.now = snapshot.now

    def build(self) -> None:
        snapshot, config = self.s, self.cfg
        self.ledger = QuotaLedger(snapshot, borrowing=config.borrowing)
        self.pool = NodePool(snapshot.nodes, snapshot.running, policy=config.placement,
                             cpu_work_on_gpu_nodes=config.cpu_work_on_gpu_nodes)
        for h in reservation_holds(snapshot, self.pool):
            self.pool.add_hold(h)
        self.claims = ClaimantHolds(snapshot, self.pool, self.ledger, config.reclaim_hold_s)
        self.lifted = False  # a claimant's held capacity is lifted for its own processing
        self.d = Decisions()
        self.shadow_for: str | None = None
        self.shadow_start = 0.0
        self.admitted: list[tuple[Workload, list[int]]] = []
        self._victim_order: list[Workload] | None = None
        self.promised: set[str] = set()
        # One reclaim attempt per group and cycle (Kueue nominates one head per
        # queue): bounds the work, and never cascades preemptions.
        # A group with a reclaim hold has its reclaim under way: its claimant goes on.
        self.reclaim_by_group: dict[str, str] = self.claims.groups()
        self._free_text: tuple[int, str] = (-1, "")
        self._cap_text: tuple[object, str] = (None, "")

    # -- helpers -----------------------------------------------------------

    def releases(self) -> list[Release]:
        out: list[Release] = []
        grace = self.cfg.reclaim_grace_s
        for w in self.s.running:
            if w.preempting:
                end = self.now + grace
            elif w.start_time is not None:
                end = w.start_time + w.max_runtime_s
            else:
                end = self.now + w.max_runtime_s
            out.append((max(end, self.now), self.pool.usage_of(w)))
        for w, nodes in self.admitted:
            out.append((self.now + w.max_runtime_s, replicas_on(nodes, w)))
        out.sort(key=lambda e: e[0])
        return out

    def victim_order(self) -> list[Workload]:
        if self._victim_order is None:
            prio, dflt = self.cfg.priority_classes, self.cfg.default_priority
            running = [w for w in self.s.running if not w.preempting]
            total = self.total
            now = self.now

            def lost(w: Workload) -> float:
                # Work a preemption throws away: dominant share x time run so far.
                share = max((w.total_t[k] / total[k]) if total[k] else 0.0 for k in range(3))
                return share * max(0.0, now - (w.start_time if w.start_time is not None else now))

            # Lowest priority class first, then the least work lost (for
            # workloads of one size: the newest first).
            if self.cfg.reclaim_least_lost_first:
                running.sort(key=lambda w: (lost(w), prio.get(w.priority, dflt),
                                            -(w.start_time or 0.0), w.id))
            else:
                running.sort(key=lambda w: (prio.get(w.priority, dflt), lost(w),
                                            -(w.start_time or 0.0), w.id))
            self._victim_order = running
        return self._victim_order

    def place(self, w: Workload) -> tuple[list[int] | None, str | None]:
        """Place ``w`` using the holds it may use; returns nodes and the reservation used."""
        pool = self.pool
        if not pool.holds:
            return pool.place(w, memo=not self.lifted), None
        end = self.now + w.max_runtime_s
        refunds = [h for h in pool.holds if h.start >= end or h.owned_by(w, self.now)]
        if not refunds:
            return pool.place(w, memo=not self.lifted), None
        for h in refunds:
            a = h.amount
            pool._change(h.node, a[0], a[1], a[2], restore=True)
        nodes = pool.place(w, memo=False)
        used_res = None
        per = replicas_on(nodes, w) if nodes is not None else {}
        for h in refunds:
            if nodes is not None and h.start < end and h.node in per:
                # An owner takes the reserved capacity: the hold shrinks.
                u = per[h.node]
                take = tuple(min(h.amount[k], u[k]) for k in range(3))
                if any(take):
                    h.amount = tuple(h.amount[k] - take[k] for k in range(3))  # type: ignore
                    used_res = h.reservation
            a = h.amount
            pool._change(h.node, -a[0], -a[1], -a[2], restore=True)
        return nodes, used_res

    # -- the cycle -----------------------------------------------------------

    def run(self, timer: Callable[[], float]) -> Decisions:
        t0 = timer()
        self.build()
        s, cfg, d, ledger, pool = self.s, self.cfg, self.d, self.ledger, self.pool
        now = self.now

        def mark(name: str) -> None:
            nonlocal t0
            t = timer()
            d.phases[name] = t - t0
            t0 = t

        pending = s.pending
        n = len(pending)
        total = self.total = cluster_total(s.nodes)
        mark("snapshot")

        # heads: static checks and the quota pre-filter.
        gnames = list(ledger.groups)
        gindex = {g: i for i, g in enumerate(gnames)}
        gidx = np.fromiter((gindex.get(w.group, -1) for w in pending), np.int64, n)
        rows = np.array([w.row for w in pending], dtype=float).reshape(n, 9)
        rt = rows[:, 1]
        tot = self.tot = rows[:, 3:6]
        big = rows[:, 6:9]
        inf3 = (np.inf, np.inf, np.inf)
        head = np.array([ledger.headroom(g) for g in gnames] + [inf3], dtype=float)
        maxjob = np.array(
            [ledger.groups[g].max_job.as_tuple() if ledger.groups[g].max_job else inf3
             for g in gnames] + [inf3], dtype=float)
        maxrt = np.array([ledger.groups[g].max_runtime_s or np.inf for g in gnames] + [np.inf])
        eps = np.array([CPU_EPS, 0.0, 0.0])
        over_quota = (tot > head[gidx] + eps) & (tot > 0)
        quota_mask = over_quota[:, 0] * 1 + over_quota[:, 1] * 2 + over_quota[:, 2] * 4
        claimant = np.zeros(n, dtype=bool)
        if self.claims.held:
            # A claimant's own hold counts in its group's usage: check it without.
            claimant = np.fromiter((self.claims.claims(w.id) for w in pending), bool, n)
            quota_mask = np.where(claimant, 0, quota_mask)
        self.claimant = claimant
        too_big = np.any(tot > maxjob[gidx] + eps, axis=1)
        too_long = rt > maxrt[gidx]
        fits_node = np.zeros(n, dtype=bool)
        for shape in pool.shapes:
            fits_node |= np.all(big <= np.asarray(shape) + eps, axis=1)
        no_roles = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(np.all(tot <= 0, axis=1)).tolist():
            no_roles[i] = not pending[i].replicas_t
        # The API validates specs; this keeps a bad row from corrupting a cycle.
        invalid = np.any(rows[:, 3:9] < 0, axis=1) | (rt <= 0) | ~np.isfinite(rows).all(axis=1)
        blocked = ((gidx < 0) | no_roles | invalid | too_big | too_long | ~fits_node
                   | (quota_mask > 0))
        mark("heads")

        usage = decayed_usage(s.usage_history, s.running, now, cfg.fair_share_half_life_s, total)
        fs = fair_share_factors(usage, ledger.nominal, total)
        fs_arr = np.array([fs.get(g, 0.0) for g in gnames] + [0.0])[gidx]
        table = score_pending(pending, now=now, config=cfg, nodes=s.nodes, total=total,
                              fair_share=fs, rows=rows, fs=fs_arr)
        d._score_of = table.breakdown
        mark("nominate")

        seq, qt = rows[:, 2], rows[:, 0]
        if cfg.ordering is Ordering.FIFO:
            order = np.lexsort((seq, qt))
        else:
            order = np.lexsort((seq, qt, -table.total))
        order_l = order.tolist()
        d.queue = [pending[i].id for i in order_l]
        d.outcomes = dict.fromkeys(d.queue, Outcome.NO_FIT)
        mark("order")

        blocked_l = blocked.tolist()
        reasons = d.reasons
        deferred: list[int] = []
        limit = cfg.max_admissions_per_cycle
        # Once the nodes are full, most of a long queue cannot fit: every so
        # often, mark (vectorised) the workloads whose replica shape is known
        # not to fit anywhere, and skip them. Only sound for workloads that
        # cannot use held capacity and whose group is done with reclaim.
        uniform = np.fromiter((w.uniform for w in pending), bool, n)
        skipped = np.zeros(n, dtype=bool)
        skipped_l: list[bool] = skipped.tolist()
        seen_failed: list = []
        order_arr = np.asarray(order_l, dtype=np.int64)
        for k, i in enumerate(order_l):
            if k % 128 == 0 and pool.failed and pool.failed != seen_failed:
                seen_failed = list(pool.failed)
                skipped = self.known_to_fail(order_arr[k:], pending, big, rt, uniform,
                                             blocked, gidx, gnames, skipped)
                skipped_l = skipped.tolist()
            if blocked_l[i] or skipped_l[i]:
                continue
            if limit is not None and len(d.admissions) >= limit:
                reasons[pending[i].id] = "admission limit of this cycle reached; next cycle"
                continue
            self.process(pending[i], first_pass=True, deferred=deferred, index=i)
        if deferred and cfg.fair_borrowing:
            # Idle quota goes first to the groups that use least of their own
            # nominal quota (in steps of a tenth), then in score order: spread
            # borrowing fairly, and keep one bursting group from taking all
            # idle quota only to have it reclaimed.
            step = {g: round(self.usage_ratio(g), 1) for g in {pending[i].group for i in deferred}}
            rank = {i: r for r, i in enumerate(deferred)}
            deferred.sort(key=lambda i: (step[pending[i].group], rank[i]))
        for i in deferred:
            if limit is not None and len(d.admissions) >= limit:
                reasons[pending[i].id] = "admission limit of this cycle reached; next cycle"
                continue
            self.process(pending[i], first_pass=False, deferred=deferred, index=i)
        # Skipped work shares one capacity text (the shadow, if any, was set
        # by a workload processed before them).
        base = self._capacity_text() if self.shadow_for is None else self.capacity_reason(None)
        by_group: dict[str, str] = {}
        for i in np.flatnonzero(skipped).tolist():
            w = pending[i]
            text = by_group.get(w.group)
            if text is None:
                prior = self.reclaim_by_group.get(w.group)
                text = base + (f"; group {w.group} is reclaiming lent quota for {prior}"
                               if prior else "")
                by_group[w.group] = text
            reasons[w.id] = text
        mark("process")

        # requeue: reasons for the work set aside in ``heads``.
        quota_text: dict[tuple[int, int], str] = {}
        qm = quota_mask.tolist()
        gl = gidx.tolist()
        for i in np.flatnonzero(blocked).tolist():
            w = pending[i]
            if gl[i] < 0:
                reasons[w.id] = f"unknown group {w.group!r}: create it or fix the workload's group"
            elif no_roles[i]:
                reasons[w.id] = "the workload has no replicas"
            elif invalid[i]:
                reasons[w.id] = ("invalid request: resources must be >= 0 and max_runtime"
                                 " > 0 seconds")
            elif too_big[i]:
                g = ledger.groups[w.group]
                reasons[w.id] = (f"group {w.group}: requests {w.total}, above the largest job"
                                 f" allowed ({g.max_job}); it will never start")
            elif too_long[i]:
                g = ledger.groups[w.group]
                reasons[w.id] = (f"group {w.group}: max_runtime {format_duration(w.max_runtime_s)}"
                                 f" is above the group's limit"
                                 f" {format_duration(g.max_runtime_s or 0)}; it will never start")
            elif not fits_node[i]:
                reasons[w.id] = (f"no node is large enough for a replica of"
                                 f" {_resources_text(w.largest_t)}; it will never start")
            else:
                key = (gl[i], qm[i])
                text = quota_text.get(key)
                if text is None:
                    text = quota_text[key] = ledger.limit_reason(w.group, qm[i])
                reasons[w.id] = text
        d.released_holds = dict(self.claims.released)
        mark("requeue")
        return d

    def usage_ratio(self, group: str) -> float:
        """The group's largest used / effective nominal over the resources it uses."""
        u, nom = self.ledger.usage[group], self.ledger.nominal[group]
        worst = 0.0
        for k in range(3):
            if u[k] > 0:
                # Using a resource it has no quota for counts as far over.
                worst = max(worst, u[k] / nom[k] if nom[k] > 0 else 10.0)
        return worst

    def known_to_fail(self, rest: np.ndarray, pending, big: np.ndarray, rt: np.ndarray,
                      uniform: np.ndarray, blocked: np.ndarray, gidx: np.ndarray,
                      gnames: list[str], skipped: np.ndarray) -> np.ndarray:
        """``skipped`` plus the workloads in ``rest`` that surely find no node now."""
        pool = self.pool
        failed = np.asarray(pool.failed, dtype=float)
        sub_big = big[rest]
        dom = np.zeros(len(rest), dtype=bool)
        for f in failed:
            dom |= np.all(sub_big >= f - _CPU_EPS3, axis=1)
        ok = dom & uniform[rest] & ~blocked[rest] & ~self.claimant[rest]
        if self.cfg.reclaim and self.cfg.borrowing:
            # Reclaim is tried once per group, for work inside the group's
            # nominal quota; such work must be looked at until then.
            ledger = self.ledger
            done = np.array([g in self.reclaim_by_group for g in gnames] + [True])
            room = np.array([np.subtract(ledger.nominal[g], ledger.usage[g]) for g in gnames]
                            + [(-1.0, -1.0, -1.0)], dtype=float)
            tot = self.tot[rest]
            within = np.all(tot <= room[gidx[rest]] + _CPU_EPS3, axis=1)
            ok &= done[gidx[rest]] | ~within
        if pool.holds:
            # Work that ends before a hold starts, or owns a reservation, may
            # use held capacity the shape memo did not count.
            latest = max(h.start for h in pool.holds)
            ok &= self.now + rt[rest] > latest
            owners = {(h.group, h.user) for h in pool.holds if h.reservation is not None}
            if owners:
                groups = {g for g, _ in owners if g}
                users = {u for _, u in owners if u}
                own = np.fromiter(
                    (pending[j].group in groups or pending[j].user in users
                     or pending[j].reservation is not None for j in rest.tolist()), bool,
                    len(rest))
                ok &= ~own
        out = skipped.copy()
        out[rest[ok]] = True
        return out

    def process(self, w: Workload, *, first_pass: bool, deferred: list[int], index: int) -> None:
        if not self.claims.claims(w.id):
            self._process(w, first_pass=first_pass, deferred=deferred, index=index)
            return
        # Only the claimant may use the capacity held for it.
        self.claims.lift(w.id)
        self.lifted = True
        try:
            self._process(w, first_pass=first_pass, deferred=deferred, index=index)
        finally:
            self.lifted = False
            self.claims.settle(w.id, admitted=self.d.outcomes.get(w.id) is Outcome.FIT)

    def _process(self, w: Workload, *, first_pass: bool, deferred: list[int], index: int) -> None:
        d, ledger, now = self.d, self.ledger, self.now
        if w.reservation is not None:
            h = next((h for h in self.pool.holds if h.reservation == w.reservation), None)
            if h is None:
                d.reasons[w.id] = f"reservation {w.reservation} is unknown or has ended"
                return
            if now < h.start:
                d.reasons[w.id] = (f"booked into reservation {w.reservation}, which starts"
                                   f" in {format_duration(h.start - now)}")
                return
        why = ledger.user_check(w)
        if why:
            d.reasons[w.id] = why
            return
        q = ledger.check(w.group, w.total_t)
        if q.mode is Mode.NO_FIT:
            can_reclaim = q.reclaimable and self.cfg.reclaim and self.cfg.borrowing
            if can_reclaim and self.reclaim(w, q.reason):
                return
            d.reasons[w.id] = q.reason + (self.reclaim_wait_text(w) if can_reclaim else "")
            return
        if q.mode is Mode.BORROW and first_pass:
            deferred.append(index)
            return
        limit_rt = self.cfg.borrow_max_runtime_s
        if q.mode is Mode.BORROW and limit_rt is not None and w.max_runtime_s > limit_rt:
            d.reasons[w.id] = (f"group {w.group}: it would have to borrow, and only work with"
                               f" max_runtime up to {format_duration(limit_rt)} may borrow"
                               f" (it declares {format_duration(w.max_runtime_s)})")
            return
        nodes, used_res = self.place(w)
        if nodes is None:
            can_reclaim = q.mode is Mode.NOMINAL and self.cfg.reclaim and self.cfg.borrowing
            # Blocked only by capacity held for the top workload: it waits its
            # turn behind it rather than preempting borrowers to go around it.
            if (can_reclaim and self.shadow_for is not None
                    and w.group not in self.reclaim_by_group and self.fits_without_shadow(w)):
                # Counts as this group's reclaim attempt for the cycle.
                self.reclaim_by_group[w.group] = ""
                can_reclaim = False
            if can_reclaim and self.reclaim(w, "no node has room"):
                return
            d.reasons[w.id] = self.capacity_reason(w) + (
                self.reclaim_wait_text(w) if can_reclaim else "")
            return
        ledger.admit(w)
        self.admitted.append((w, nodes))
        d.admissions.append(Admission(
            workload_id=w.id,
            placement=self.pool.placement_names(w, nodes),
            borrows=q.mode is Mode.BORROW,
            backfill=self.shadow_for is not None,
            reservation=used_res,
        ))
        d.outcomes[w.id] = Outcome.FIT

    def fits_without_shadow(self, w: Workload) -> bool:
        """Whether ``w`` would fit if the backfill shadow's holds were free."""
        pool = self.pool
        held = [h for h in pool.holds if h.workload is not None]
        for h in held:
            a = h.amount
            pool._change(h.node, a[0], a[1], a[2], restore=True)
        nodes = pool.place(w, memo=False)
        if nodes is not None:
            pool.unplace(w, nodes)
        for h in held:
            a = h.amount
            pool._change(h.node, -a[0], -a[1], -a[2], restore=True)
        return nodes is not None

    def capacity_reason(self, w: Workload | None) -> str:
        key = (self.pool.version, self.shadow_for)
        if self.shadow_for is not None or not self.cfg.backfill:
            if self._cap_text[0] == key:
                return self._cap_text[1]
            self._cap_text = (key, self._capacity_text())
            return self._cap_text[1]
        return self._capacity_text(w)

    def _capacity_text(self, w: Workload | None = None) -> str:
        now = self.now
        if self._free_text[0] != self.pool.version:
            self._free_text = (self.pool.version, _resources_text(self.pool.total_free()))
        free = self._free_text[1]
        if self.cfg.backfill and self.shadow_for is None and w is not None:
            result = shadow(self.pool, w, self.releases(), now)
            if result is None:
                ends = [h.end for h in self.pool.holds if h.reservation is not None]
                until = (f"; the first ends in {format_duration(min(ends) - now)}"
                         if ends else "")
                return (f"no node has room for it now (free: {free}), nor after the running"
                        f" work ends: reservations keep the capacity{until}")
            start, holds = result
            self.shadow_for, self.shadow_start = w.id, start
            for h in holds:
                self.pool.add_hold(h)
            return (f"no node has room for it now (free: {free}); earliest start in"
                    f" {format_duration(start - now)}, when running work reaches its"
                    f" max_runtime; capacity is held for it so that nothing delays it")
        if self.shadow_for is not None:
            window = self.shadow_start - now
            return (f"no node has room for it now (free: {free}); capacity is held for"
                    f" {self.shadow_for}, which starts within {format_duration(window)};"
                    f" work with max_runtime up to {format_duration(window)} may backfill")
        return f"no node has room for it now (free: {free})"

    def reclaim_wait_text(self, w: Workload) -> str:
        """Why ``w`` did not reclaim yet, if only ``reclaim_after_s`` stopped it."""
        left = self.cfg.reclaim_after_s - (self.now - w.queue_time)
        if left <= 0 or w.group in self.reclaim_by_group:
            return ""
        need = [k for k in range(3) if w.total_t[k] > 0]
        if not any(self.ledger.borrowing_group(g)[k] for g in self.ledger.groups
                   if g != w.group for k in need):
            return ""  # nobody borrows what it needs: reclaim could not help
        return (f"; borrowers may end by themselves: reclaim of lent quota starts in"
                f" {format_duration(left)} (reclaim_after {format_duration(self.cfg.reclaim_after_s)})")

    def plan_after(self, w: Workload, victims: list[Workload]) -> list[int] | None:
        """Where ``w`` would be placed with ``victims`` gone (the pool is left as it was)."""
        pool = self.pool
        for v in victims:
            pool.release(v)
        nodes = pool.place(w, memo=False)
        if nodes is not None:
            pool.unplace(w, nodes)
        for v in victims:
            pool.occupy(v)
        return nodes

    def reclaim(self, w: Workload, why: str) -> bool:
        """Try to make room for ``w`` by preempting borrowers; True if it will get it."""
        if self.now - w.queue_time < self.cfg.reclaim_after_s:
            # Not yet: it waits for borrowers to end by themselves. This does
            # not use up the group's reclaim attempt of the cycle, so its
            # older work may still reclaim.
            return False
        prior = self.reclaim_by_group.get(w.group)
        if prior is not None and prior != w.id and not self.claims.claims(w.id):
            if prior:
                self.d.reasons[w.id] = (f"{why}; waiting behind {prior}, for which group"
                                        f" {w.group} is reclaiming lent quota")
                return True
            return False
        self.reclaim_by_group[w.group] = ""
        # Each victim is preempted at most once per reclaim: the claimant's earlier
        # victims (some may run again elsewhere) are not candidates again, and
        # victims stopping for another claimant free capacity held for that one.
        earlier = self.claims.hold_of(w.id)
        own = set(earlier.victim_ids) if earlier is not None else set()
        others = self.claims.victims_of_others(w.id)
        stopping = [r for r in self.s.running if r.preempting and r.id not in self.promised
                    and base_id(r.id) not in others]
        candidates = [r for r in self.victim_order()
                      if r.id not in self.promised and base_id(r.id) not in own]
        victims = select_victims(w, self.ledger, self.pool, stopping, candidates)
        if victims is None:
            return False
        d = self.d
        plan = self.plan_after(w, victims)
        if plan is not None:
            # Keep what it will need -- victims' capacity and the free capacity it
            # counted on beside it -- from now on (plinth.scheduler.holds).
            hold = new_hold(w, victims, plan, self.pool, self.now, earlier)
            self.claims.record(w, hold, victims)
            d.holds.append(hold)
        new = [v for v in victims if not v.preempting]
        for v in victims:
            self.promised.add(v.id)
        for v in new:
            dims = [RESOURCE_NAMES[k] for k in range(3)
                    if self.ledger.borrowing_group(v.group)[k] and v.total_t[k] > 0]
            d.preemptions.append(Preemption(
                workload_id=v.id,
                for_workload=w.id,
                reason=(f"reclaim: group {w.group} needs its lent quota back for {w.id};"
                        f" group {v.group} borrows {', '.join(dims) or 'capacity'}"),
            ))
        d.outcomes[w.id] = Outcome.PREEMPT
        self.reclaim_by_group[w.group] = w.id
        groups = sorted({v.group for v in victims})
        d.reasons[w.id] = (f"{why}; reclaiming: waiting for {len(victims)} borrowed"
                           f" workload(s) of group {', '.join(groups)} to stop")
        return True


def schedule(
    snapshot: Snapshot,
    config: SchedulerConfig = _DEFAULT_CONFIG,
    *,
    timer: Callable[[], float] = time.perf_counter,
) -> Decisions:
    """Run one cycle over ``snapshot`` and return what should happen.

    Pure: reads no clock (``snapshot.now`` is the present; ``timer`` only
    measures phase durations), does no I/O and does not modify its inputs.
    Admissions never exceed any quota, personal cap or node capacity given
    the snapshot, so applying them in one transaction against the state the
    snapshot was taken from cannot over-admit.
    """
    return _Cycle(snapshot, config).run(timer)
