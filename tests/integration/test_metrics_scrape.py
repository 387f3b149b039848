"""Done-when 6 (issue 9): /metrics on a live server shows per-group quota gauges, the
scheduling cycle's phase histograms and preemptions by reason.

A real ``plinth server`` subprocess on a 2-cpu node: group a (1 cpu) borrows group b's
idle cpu; b then claims it back (a reclaim preemption); b holds an expansion.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ._helpers import ADMIN_TOKEN, Api, cancel_all, make_member, start_server, wait_for

CONFIG = {
    "nodes": [{"name": "n1", "cpu": 2, "memory": "4Gi"}],
    "scheduler": {"poll_interval": 0.05, "reclaim_grace": "2s"},
    "jobs": {"grace": "1s"},
}
SLEEP = "import time; time.sleep(120)"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text `text`."""
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or "")) == labels:
            return float(m.group(2))
    raise AssertionError(f"no sample {name}{labels} in /metrics")


@pytest.mark.slow
def test_metrics_show_group_quotas_cycle_phases_and_preemptions(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", CONFIG)
    admin = Api(server, ADMIN_TOKEN)
    try:
        admin.ok("PATCH", "/api/v1/groups/default", json={"quota": {"cpu": 0, "memory": 0}})
        a = make_member(admin, server, "a", "alice", quota={"cpu": 1, "memory": "2Gi"})
        b = make_member(admin, server, "b", "bob", quota={"cpu": 1, "memory": "2Gi"},
                        borrow_limit={"cpu": 0})  # fmt: skip
        end = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
        admin.ok("POST", "/api/v1/quota-expansions",
                 json={"group": "b", "add": {"memory": "1Gi"}, "end": end, "reason": "demo"})
        own = a.submit("own", SLEEP, cpu=1)
        a.wait_state(own, {"running"})
        borrowing = a.submit("borrowing", SLEEP, cpu=1)
        a.wait_state(borrowing, {"running"})

        text = httpx.get(f"{server.url}/metrics").text
        assert sample(text, "plinth_group_quota_nominal", group="a", resource="cpu") == 1
        assert sample(text, "plinth_group_quota_used", group="a", resource="cpu") == 2
        assert sample(text, "plinth_group_quota_borrowed", group="a", resource="cpu") == 1
        assert sample(text, "plinth_group_quota_lent", group="b", resource="cpu") == 1
        assert sample(text, "plinth_group_quota_expansion", group="b", resource="memory") == 1024
        assert sample(text, "plinth_group_quota_nominal", group="b", resource="memory") == 2048
        for phase in ("snapshot", "heads", "nominate", "order", "process", "requeue"):
            n = sample(text, "plinth_scheduler_phase_seconds_count", phase=phase)
            assert n >= 1
            assert sample(text, "plinth_scheduler_phase_seconds_bucket", phase=phase,
                          le="+Inf") == n  # fmt: skip

        claim = b.submit("claim", SLEEP, cpu=1)  # b wants its lent cpu back
        b.wait_state(claim, {"running"})
        text = httpx.get(f"{server.url}/metrics").text
        assert sample(text, "plinth_preemptions_total", reason="reclaim") == 1
        assert sample(text, "plinth_group_quota_borrowed", group="a", resource="cpu") == 0
        wait_for(lambda: a.job(borrowing)["state"] == "pending", 30, "the victim to requeue")
    finally:
        try:
            cancel_all(admin)
        finally:
            admin.close()
            server.stop()
