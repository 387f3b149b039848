"""The fair-share usage history: one record per ended replica attempt.

The scheduler weighs each group's recent use (``plinth.scheduler.score``); reading
every record each cycle would cost a query that grows with history, so the history
is read once and then kept in memory, appended to as replicas end (``record``) and
trimmed of records older than ``KEEP_HALF_LIVES`` half-lives (they weigh < 0.1%).
Only the control loop's thread writes; request threads read ``records()``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from plinth import scheduler as core
from plinth.services.scheduling import epoch, resources
from plinth.store.models import Group, UsageRecord, Workload

__all__ = ["KEEP_HALF_LIVES", "UsageHistory"]

KEEP_HALF_LIVES = 10  # usage older than this many half-lives weighs < 0.1%: dropped


class UsageHistory:
    """The records in memory (None until first loaded) and their table."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self._records: list[core.UsageRecord] | None = None

    @property
    def loaded(self) -> bool:
        return self._records is not None

    def records(self) -> tuple[core.UsageRecord, ...]:
        """What is in memory now (empty before the first load); for read-side views."""
        return tuple(self._records or ())

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=KEEP_HALF_LIVES * self.half_life_s)

    def load(self, s: Any, now: datetime) -> tuple[core.UsageRecord, ...]:
        """The history, read in transaction `s` the first time only."""
        if self._records is None:
            rows = s.connection().execute(
                select(Group.name, UsageRecord.start, UsageRecord.end, UsageRecord.resources)
                .join(Group, UsageRecord.group_id == Group.id)
                .where(UsageRecord.end > self.cutoff(now))
            )
            self._records = [
                core.UsageRecord(g, epoch(a), epoch(b), resources(res)) for g, a, b, res in rows
            ]
        return tuple(self._records)

    def trim(self, s: Any, now: datetime) -> None:
        """Drop records past the cutoff from memory and from the table (in `s`)."""
        cutoff = self.cutoff(now)
        if self._records is not None:
            t_cut = epoch(cutoff)
            self._records = [u for u in self._records if u.end > t_cut]
        s.connection().execute(delete(UsageRecord).where(UsageRecord.end <= cutoff))

    def record(self, s: Any, ended: list[dict[str, Any]]) -> None:
        """One record per ended replica attempt, in transaction `s` and in memory.
        `ended`: dicts with ``workload_id``, ``start``, ``end`` and ``resources``."""
        if not ended:
            return
        wids = {u["workload_id"] for u in ended}
        groups = {
            wid: (gid, name)
            for wid, gid, name in s.connection().execute(
                select(Workload.id, Group.id, Group.name)
                .join(Group, Workload.group_id == Group.id)
                .where(Workload.id.in_(wids))
            )
        }
        rows = []
        for u in ended:
            gid, name = groups[u["workload_id"]]
            rows.append({"group_id": gid, "start": u["start"], "end": u["end"],
                         "resources": u["resources"]})  # fmt: skip
            if self._records is not None:
                self._records.append(core.UsageRecord(
                    name, epoch(u["start"]), epoch(u["end"]), resources(u["resources"])
                ))  # fmt: skip
        s.connection().execute(insert(UsageRecord), rows)  # Core: no ORM bulk-insert cost
