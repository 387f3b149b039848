"""Quota accounting for one cycle: effective quotas, usage, borrowing and lending.

The model (Kueue's cohort, extended with personal caps and expansions):

* effective nominal of a group at ``now`` = ``nominal`` + active expansions;
  a user's effective cap likewise.
* each group may lend ``lend = min(lend_limit, nominal)`` of its nominal; the
  rest, ``guaranteed = nominal - lend``, is never used by anyone else.
* the cohort (all groups) has a lending pool of ``sum(lend)``; a group's usage
  beyond its guaranteed part draws from the pool, so the pool check
  ``sum(max(0, usage - guaranteed)) <= sum(lend)`` ensures no group's
  guaranteed quota is used by others and no lender lends more than its limit.
* a group may use up to ``nominal + borrow_limit``.

Vectors are ``(cpu, memory, gpu)`` tuples; the ledger mutates only itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from plinth.scheduler.model import Snapshot, Workload
from plinth.scheduler.resources import CPU_EPS, RESOURCE_NAMES, Resources, format_amount

Vec = tuple[float, float, float]
INF = float("inf")
_INF3: Vec = (INF, INF, INF)


def _add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _le(a: Vec, b: Vec) -> bool:
    return a[0] <= b[0] + CPU_EPS and a[1] <= b[1] and a[2] <= b[2]


def _pos(a: Vec) -> Vec:
    return (a[0] if a[0] > 0 else 0.0, a[1] if a[1] > 0 else 0.0, a[2] if a[2] > 0 else 0.0)


class Mode(IntEnum):
    """How a demand fits a group's quota."""

    NO_FIT = 0
    BORROW = 1  # fits only by borrowing other groups' idle quota
    NOMINAL = 2  # fits inside the group's own effective nominal quota


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    """Result of :meth:`QuotaLedger.check`. ``reclaimable``: it would fit the
    group's own nominal, only capacity lent to others is missing."""

    mode: Mode
    reason: str = ""
    reclaimable: bool = False


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """A group's quota picture at one moment (what ``plinth group list`` shows)."""

    name: str
    nominal: Resources  # effective: nominal + active expansions
    expansion: Resources
    used: Resources
    borrowed: Resources
    lent: Resources  # its idle quota used by borrowers (pro rata over lenders)
    lendable: Resources  # idle part of its lend limit still available to others
    guaranteed: Resources


class QuotaLedger:
    """Per-group and per-user usage and limits, mutated as a cycle admits work."""

    def __init__(self, snapshot: Snapshot, *, borrowing: bool = True) -> None:
        now = snapshot.now
        self.borrowing = borrowing
        self.groups = {g.name: g for g in snapshot.groups}
        self.users = {u.name: u for u in snapshot.users}
        self.expansion: dict[str, Vec] = {g: (0.0, 0.0, 0.0) for g in self.groups}
        self.user_expansion: dict[str, Vec] = {}
        self.expansion_until: dict[str, float] = {}
        for e in snapshot.expansions:
            if not e.active(now):
                continue
            if e.group is not None and e.group in self.expansion:
                self.expansion[e.group] = _add(self.expansion[e.group], e.add.as_tuple())
                key = "group:" + e.group
            elif e.user is not None:
                self.user_expansion[e.user] = _add(
                    self.user_expansion.get(e.user, (0.0, 0.0, 0.0)), e.add.as_tuple()
                )
                key = "user:" + e.user
            else:
                continue
            self.expansion_until[key] = max(self.expansion_until.get(key, e.end), e.end)

        self.nominal: dict[str, Vec] = {}
        self.lend: dict[str, Vec] = {}
        self.guaranteed: dict[str, Vec] = {}
        self.limit: dict[str, Vec] = {}
        for name, g in self.groups.items():
            nom = _add(g.nominal.as_tuple(), self.expansion[name])
            lend = nom if g.lend_limit is None else tuple(
                min(a, b) for a, b in zip(g.lend_limit.as_tuple(), nom, strict=True)
            )
            self.nominal[name] = nom
            self.lend[name] = lend  # type: ignore[assignment]
            self.guaranteed[name] = _sub(nom, lend)  # type: ignore[arg-type]
            if not borrowing:
                self.limit[name] = nom
            elif g.borrow_limit is None:
                self.limit[name] = _INF3
            else:
                self.limit[name] = _add(nom, g.borrow_limit.as_tuple())

        self.usage: dict[str, Vec] = {g: (0.0, 0.0, 0.0) for g in self.groups}
        self.user_usage: dict[str, Vec] = {}
        self.user_count: dict[str, int] = {}
        for w in snapshot.running:
            self._add_usage(w.group, w.user, w.total_t, 1)
        self.pool_cap: Vec = (0.0, 0.0, 0.0)
        for lend in self.lend.values():
            self.pool_cap = _add(self.pool_cap, lend)
        self.pool_used = self._pool_used()

    # -- bookkeeping -------------------------------------------------------

    def _add_usage(self, group: str, user: str, d: Vec, count: int) -> None:
        if group in self.usage:
            self.usage[group] = _add(self.usage[group], d)
        self.user_usage[user] = _add(self.user_usage.get(user, (0.0, 0.0, 0.0)), d)
        self.user_count[user] = self.user_count.get(user, 0) + count

    def _pool_used(self) -> Vec:
        tot: Vec = (0.0, 0.0, 0.0)
        for g, u in self.usage.items():
            tot = _add(tot, _pos(_sub(u, self.guaranteed[g])))
        return tot

    def _pool_delta(self, group: str, d: Vec) -> Vec:
        u, gu = self.usage[group], self.guaranteed[group]
        return _sub(_pos(_sub(_add(u, d), gu)), _pos(_sub(u, gu)))

    def admit(self, w: Workload) -> None:
        """Count ``w`` as running."""
        self.pool_used = _add(self.pool_used, self._pool_delta(w.group, w.total_t))
        self._add_usage(w.group, w.user, w.total_t, 1)

    def release(self, w: Workload) -> None:
        """Stop counting ``w`` (a preemption victim)."""
        neg = (-w.total_t[0], -w.total_t[1], -w.total_t[2])
        self.pool_used = _add(self.pool_used, self._pool_delta(w.group, neg))
        self._add_usage(w.group, w.user, neg, -1)

    def reserve(self, group: str, d: Vec) -> None:
        """Count ``d`` as used by ``group`` (capacity held for one of its workloads)."""
        self.pool_used = _add(self.pool_used, self._pool_delta(group, d))
        self.usage[group] = _add(self.usage[group], d)

    def unreserve(self, group: str, d: Vec) -> None:
        """Undo :meth:`reserve`."""
        neg = (-d[0], -d[1], -d[2])
        self.pool_used = _add(self.pool_used, self._pool_delta(group, neg))
        self.usage[group] = _add(self.usage[group], neg)

    # -- queries -----------------------------------------------------------

    def user_cap(self, user: str) -> Vec | None:
        u = self.users.get(user)
        if u is None or u.cap is None:
            return None
        return _add(u.cap.as_tuple(), self.user_expansion.get(user, (0.0, 0.0, 0.0)))

    def borrowing_group(self, group: str) -> tuple[bool, bool, bool]:
        """Per dimension: is the group using more than its effective nominal?"""
        u, n = self.usage[group], self.nominal[group]
        return (u[0] > n[0] + CPU_EPS, u[1] > n[1], u[2] > n[2])

    def user_check(self, w: Workload) -> str:
        """Empty when ``w`` fits its user's cap and per-user workload count, else why not."""
        g = self.groups[w.group]
        if g.max_workloads_per_user is not None:
            n = self.user_count.get(w.user, 0)
            if n >= g.max_workloads_per_user:
                return (
                    f"user {w.user}: {n}/{g.max_workloads_per_user} workloads running"
                    f" (group {w.group}'s limit per user)"
                )
        cap = self.user_cap(w.user)
        if cap is not None:
            used = self.user_usage.get(w.user, (0.0, 0.0, 0.0))
            after = _add(used, w.total_t)
            if not _le(after, cap):
                parts = []
                for i, name in enumerate(RESOURCE_NAMES):
                    if after[i] > cap[i] + (CPU_EPS if i == 0 else 0):
                        parts.append(
                            f"{name} {format_amount(name, used[i])}/{format_amount(name, cap[i])}"
                            f" in use, needs {format_amount(name, w.total_t[i])}"
                        )
                exp = self.user_expansion.get(w.user)
                note = " (personal cap incl. expansion)" if exp and any(exp) else " (personal cap)"
                return f"user {w.user}: " + "; ".join(parts) + note
        return ""

    def check(self, group: str, d: Vec) -> QuotaCheck:
        """Whether demand ``d`` fits ``group``'s quota now, and how."""
        u = self.usage[group]
        after = _add(u, d)
        nom = self.nominal[group]
        lim = self.limit[group]
        if not _le(after, lim):
            mask = (
                (after[0] > lim[0] + CPU_EPS) * 1 + (after[1] > lim[1]) * 2 + (after[2] > lim[2]) * 4
            )
            return QuotaCheck(Mode.NO_FIT, self.limit_reason(group, mask))
        within_nominal = _le(after, nom)
        delta = self._pool_delta(group, d)
        if not _le(_add(self.pool_used, delta), self.pool_cap):
            return QuotaCheck(
                Mode.NO_FIT, self._pool_reason(group, d, within_nominal), within_nominal
            )
        return QuotaCheck(Mode.NOMINAL if within_nominal else Mode.BORROW)

    def headroom(self, group: str) -> Vec:
        """Upper bound on what ``group`` can still be admitted (ignoring the pool)."""
        return _sub(self.limit[group], self.usage[group])

    # -- text --------------------------------------------------------------

    def _nominal_text(self, group: str, i: int) -> str:
        name = RESOURCE_NAMES[i]
        text = format_amount(name, self.nominal[group][i])
        exp = self.expansion[group][i]
        if exp:
            text += f" (incl. +{format_amount(name, exp)} expansion)"
        return text

    def limit_reason(self, group: str, mask: int) -> str:
        """Why work hits ``group``'s limit in the dimensions of ``mask``
        (bit 0 cpu, bit 1 memory, bit 2 gpu): used, nominal, borrow limit."""
        u, nom = self.usage[group], self.nominal[group]
        g = self.groups[group]
        parts = []
        for i, name in enumerate(RESOURCE_NAMES):
            if not mask & (1 << i):
                continue
            text = f"{name} {format_amount(name, u[i])}/{self._nominal_text(group, i)} in use"
            if not self.borrowing:
                text += ", borrowing disabled"
            elif g.borrow_limit is not None:
                b = g.borrow_limit.as_tuple()[i]
                if b <= 0:
                    text += ", borrowing not allowed"
                else:
                    borrowed = max(0.0, u[i] - nom[i])
                    text += (f", borrow limit {format_amount(name, b)} reached"
                             f" ({format_amount(name, borrowed)} borrowed)")
            parts.append(text)
        return f"group {group}: " + "; ".join(parts)

    def _pool_reason(self, group: str, d: Vec, within_nominal: bool) -> str:
        delta = self._pool_delta(group, d)
        after = _add(self.pool_used, delta)
        parts = []
        for i, name in enumerate(RESOURCE_NAMES):
            if after[i] <= self.pool_cap[i] + (CPU_EPS if i == 0 else 0):
                continue
            u = self.usage[group][i]
            idle = max(0.0, self.pool_cap[i] - self.pool_used[i])
            if within_nominal:
                parts.append(
                    f"{name} {format_amount(name, u)}/{self._nominal_text(group, i)} in use;"
                    f" its idle quota is lent to other groups"
                )
            else:
                parts.append(
                    f"{name} {format_amount(name, u)}/{self._nominal_text(group, i)} in use,"
                    f" needs {format_amount(name, d[i])}; other groups have only"
                    f" {format_amount(name, idle)} {name} idle to lend"
                )
        return f"group {group}: " + "; ".join(parts)

    def status(self, group: str) -> GroupStatus:
        """The group's quota picture (for ``plinth group list``)."""
        u, n = self.usage[group], self.nominal[group]
        lend = self.lend[group]
        idle_lendable = tuple(
            max(0.0, min(lend[i], n[i] - u[i])) for i in range(3)
        )
        # The pool does not record who lent to whom: attribute the total
        # borrowed to lenders in proportion to their unused lendable quota.
        borrowed_all = [0.0, 0.0, 0.0]
        unused_all = [0.0, 0.0, 0.0]
        for g in self.groups:
            gu, gn, gl = self.usage[g], self.nominal[g], self.lend[g]
            for i in range(3):
                borrowed_all[i] += max(0.0, gu[i] - gn[i])
                unused_all[i] += max(0.0, min(gl[i], gn[i] - gu[i]))
        lent = tuple(
            borrowed_all[i] * idle_lendable[i] / unused_all[i] if unused_all[i] > 0 else 0.0
            for i in range(3)
        )
        return GroupStatus(
            name=group,
            nominal=Resources.from_tuple(n),
            expansion=Resources.from_tuple(self.expansion[group]),
            used=Resources.from_tuple(u),
            borrowed=Resources.from_tuple(_pos(_sub(u, n))),
            lent=Resources.from_tuple(lent),  # type: ignore[arg-type]
            lendable=Resources.from_tuple(
                tuple(idle_lendable[i] - lent[i] for i in range(3))  # type: ignore[arg-type]
            ),
            guaranteed=Resources.from_tuple(self.guaranteed[group]),
        )
