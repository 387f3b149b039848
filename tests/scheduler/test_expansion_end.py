"""When an expansion ends (expired or revoked), work admitted under it keeps running,
counts as borrowing, and is reclaimable like any borrowed work; nothing new is admitted
under the ended expansion."""

from __future__ import annotations

from plinth.scheduler import Expansion, QuotaLedger, schedule

from .builders import NOW, group, job, node, res, snapshot

GROUPS = [group("ads", 2, 64), group("rec", 2, 64)]
RUNNING = [job("a1").cpu(2).running("n1", start=NOW - 900),
           job("a2").cpu(2).running("n1", start=NOW - 300)]  # admitted under the expansion


def _expansion(end: float) -> Expansion:
    return Expansion(add=res(2), start=NOW - 1000, end=end, group="ads", reason="launch")


def test_work_under_an_ended_expansion_keeps_running_as_borrowing() -> None:
    s = snapshot(nodes=[node("n1", 4, 64)], groups=GROUPS, running=RUNNING,
                 expansions=[_expansion(end=NOW)])  # ended at `now` (expired or revoked)
    ledger = QuotaLedger(s)
    assert ledger.borrowing_group("ads") == (True, False, False)
    st = ledger.status("ads")
    assert st.expansion.cpu == 0 and st.borrowed.cpu == 2
    d = schedule(s)
    assert d.preemptions == []  # nobody needs it back: it runs on


def test_it_is_reclaimed_when_the_lender_needs_its_quota() -> None:
    s = snapshot(nodes=[node("n1", 4, 64)], groups=GROUPS, running=RUNNING,
                 expansions=[_expansion(end=NOW)], pending=[job("r1").group("rec").cpu(2)])
    d = schedule(s)
    assert [p.workload_id for p in d.preemptions] == ["a2"]  # the newest, least work lost
    assert d.preemptions[0].for_workload == "r1" and "reclaim" in d.preemptions[0].reason


def test_while_active_it_is_not_reclaimable_and_once_ended_admits_nothing_more() -> None:
    active = snapshot(nodes=[node("n1", 8, 64)], groups=GROUPS, running=RUNNING,
                      expansions=[_expansion(end=NOW + 3600)],
                      pending=[job("r1").group("rec").cpu(2), job("a3").cpu(1)])
    d = schedule(active)
    assert d.preemptions == [] and "a3" not in d.admitted_ids  # 4/4 in use
    ended = snapshot(nodes=[node("n1", 8, 64)], groups=[group("ads", 2, 64, borrow=res(0, 0)),
                                                       GROUPS[1]],
                     running=RUNNING, expansions=[_expansion(end=NOW)],
                     pending=[job("a3").cpu(1)])
    d = schedule(ended)
    assert "a3" not in d.admitted_ids and "cpu 4/2 in use" in d.reasons["a3"]
