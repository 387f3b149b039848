"""A booked window (``at`` + ``duration``): the scheduler keeps the session's
resources free from other work -- except work that ends before the window starts --
and starts the session at the window's start; it ends at the window's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.conftest import role
from tests.notebooks.conftest import Notebooks


def test_a_booked_window_keeps_its_resources_and_starts_the_session_on_time(
    nbs: Notebooks,
) -> None:
    p = nbs.p
    h, _ = p.member()
    other, _ = p.member()
    start = datetime.now(UTC) + timedelta(seconds=8)
    nb = nbs.start(h, resources={"cpu": 6, "memory": "256Mi"}, at=start.isoformat(),
                   duration="1h")  # fmt: skip
    assert nb["state"] == "pending" and nb["window"]["reservation"].startswith("rsv-")
    assert datetime.fromisoformat(nb["window"]["end"]) == start + timedelta(hours=1)
    # Node n1 has 8 cores; the window holds 6 of them from `start` on.
    long = p.submit(other, {"main": role("import time; time.sleep(3600)", cpu=4)},
                    max_runtime="1h")  # fmt: skip
    short = p.submit(other, {"main": role("print('done')", cpu=4)}, max_runtime="2s")
    assert p.wait(other, short["id"], timeout=30)["state"] == "succeeded"
    assert p.job(other, long["id"])["state"] == "pending"
    r = p.c.get(f"/api/v1/jobs/{long['id']}/explain", headers=other)
    assert "reserv" in r.text, r.text
    assert nbs.get(h, nb["id"])["state"] == "pending"  # not before its window
    running = nbs.wait_state(h, nb["id"], {"running"}, timeout=60)
    assert datetime.fromisoformat(running["started_at"]) >= start
    assert datetime.fromisoformat(running["ends_at"]) == start + timedelta(hours=1)
    nbs.wait_ready(h, nb["id"])
    assert p.job(other, long["id"])["state"] == "pending"  # 8 - 6 < 4 cores
    # Stopping the session frees the window: the waiting job starts.
    r = p.c.post(f"/api/v1/notebooks/{nb['id']}/stop", headers=h)
    assert r.status_code == 200, r.text
    p.wait(other, long["id"], {"running"}, timeout=30)
    r = p.c.post(f"/api/v1/notebooks/{nb['id']}/extend", json={"by": "1h"}, headers=h)
    assert r.status_code == 409


def test_a_booking_needs_both_at_and_duration_and_a_future_start(nbs: Notebooks) -> None:
    h, _ = nbs.p.member()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for body in ({"at": soon}, {"duration": "1h"},
                 {"at": "2000-01-01T00:00:00Z", "duration": "1h"},
                 {"at": "not a time", "duration": "1h"},
                 {"at": "9999-12-31T23:00:00Z", "duration": "2h"}):  # fmt: skip
        r = nbs.p.c.post("/api/v1/notebooks", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
