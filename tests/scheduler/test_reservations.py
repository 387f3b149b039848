"""Reservations: capacity kept free for a window; only work ending before it may use it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from plinth.scheduler import Reservation, schedule

from .builders import HOUR, NOW, group, job, node, res, snapshot

GROUPS = [group("ads", cpu=64, mem=256), group("nb", cpu=64, mem=256)]
# 4 of n1's 8 cores are booked for group nb from NOW+1h to NOW+2h.
BOOKING = Reservation("rsv-1", res(4, 8), start=NOW + HOUR, end=NOW + 2 * HOUR, group="nb",
                      node="n1")


@dataclass
class Case:
    name: str
    pending: list
    running: list = field(default_factory=list)
    reservations: list = field(default_factory=lambda: [BOOKING])
    nodes: list = field(default_factory=lambda: [node("n1", 8, 32)])
    now: float = NOW
    want_admitted: list[str] = field(default_factory=list)
    want_reservation: dict[str, str] = field(default_factory=dict)
    want_reason: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        name="reserved capacity is kept free for work that would overlap the window",
        pending=[job("long").cpu(6).runtime(3 * HOUR)],
        want_reason={"long": "no node has room for it now"},
    ),
    Case(
        name="the free rest of the node is usable",
        pending=[job("long").cpu(4).runtime(3 * HOUR)],
        want_admitted=["long"],
    ),
    Case(
        name="work that ends before the window may use it",
        pending=[job("short").cpu(8).runtime(HOUR)],
        want_admitted=["short"],
    ),
    Case(
        name="in the window the owner's work uses the reserved capacity",
        now=NOW + HOUR,
        running=[job("other").cpu(4).runtime(3 * HOUR).running("n1", start=NOW)],
        pending=[job("nb1").group("nb").cpu(4).runtime(HOUR)],
        want_admitted=["nb1"],
        want_reservation={"nb1": "rsv-1"},
    ),
    Case(
        name="in the window other groups cannot",
        now=NOW + HOUR,
        pending=[job("x").cpu(6).runtime(HOUR)],
        want_reason={"x": "no node has room for it now"},
    ),
    Case(
        name="a booked workload waits for its window",
        pending=[job("nb1").group("nb").cpu(4).booked("rsv-1")],
        want_reason={"nb1": "booked into reservation rsv-1, which starts in 1h00m"},
    ),
    Case(
        name="a booked workload starts when its window opens",
        now=NOW + HOUR + 1,
        pending=[job("nb1").group("nb").cpu(4).booked("rsv-1").kind("notebook")],
        want_admitted=["nb1"],
        want_reservation={"nb1": "rsv-1"},
    ),
    Case(
        name="a booking of an ended reservation is reported",
        now=NOW + 3 * HOUR,
        pending=[job("nb1").group("nb").cpu(4).booked("rsv-1")],
        want_reason={"nb1": "reservation rsv-1 is unknown or has ended"},
    ),
    Case(
        name="the owner's running work counts against its reservation",
        now=NOW + HOUR,
        running=[job("nb0").group("nb").cpu(4).booked("rsv-1").running("n1", start=NOW + HOUR)],
        pending=[job("x").cpu(4).runtime(HOUR)],
        want_admitted=["x"],
    ),
    Case(
        name="an unpinned reservation is held on some node",
        reservations=[Reservation("rsv-2", res(8, 8), start=NOW + HOUR, end=NOW + 2 * HOUR,
                                  user="alice")],
        nodes=[node("n1", 8, 32), node("n2", 8, 32)],
        pending=[job("a").cpu(8).runtime(3 * HOUR).seq(1),
                 job("b").cpu(8).runtime(3 * HOUR).seq(2)],
        want_admitted=["a"],
        want_reason={"b": "no node has room"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_reservation_cases(case: Case) -> None:
    s = snapshot(nodes=case.nodes, groups=GROUPS, running=case.running, pending=case.pending,
                 reservations=case.reservations, now=case.now)
    d = schedule(s)
    assert sorted(d.admitted_ids) == sorted(case.want_admitted)
    for wid, rid in case.want_reservation.items():
        assert next(a for a in d.admissions if a.workload_id == wid).reservation == rid
    for wid, text in case.want_reason.items():
        assert text in d.reasons[wid], d.reasons[wid]
