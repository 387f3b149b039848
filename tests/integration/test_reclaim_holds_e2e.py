"""Done-when 1 (issue 9): reclaim without thrash, on a real server.

Overcommitted quotas (ads 8 + rec 2 + ml 4 CPUs on two 4-CPU nodes). rec runs two jobs
in its quota and two borrowed ones; ml fills its 4 CPUs. ads submits a gang of two 1-CPU
replicas: the two newest rec jobs are preempted for it. They stop one after the other
(the first at once, the second a moment later), and between their exits the first one,
back in the queue with an older queue time than the claimant, would borrow its CPU
again -- it may not: the capacity is held for the claimant. Each victim's events show
one preemption, and the claimant starts as soon as the second victim has exited.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._helpers import ADMIN_TOKEN, PY, Api, make_member, serving, wait_for

pytestmark = pytest.mark.slow

GRACE_S = 5.0
CONFIG = {
    "nodes": [{"name": "n1", "cpu": 4, "memory": "8Gi"}, {"name": "n2", "cpu": 4, "memory": "8Gi"}],
    "scheduler": {"poll_interval": 0.05, "reclaim_grace": f"{GRACE_S}s"},
    "jobs": {"grace": "1s"},
}
# Attempt 0 runs until SIGTERM, then exits after `delay` seconds (a checkpoint being
# written); later attempts wait for a file (they must not run before the claimant).
VICTIM = """
import os, signal, sys, time
if os.environ["PLINTH_ATTEMPT"] != "0":
    while not os.path.exists({release!r}): time.sleep(0.05)
    sys.exit(0)
def term(*_):
    time.sleep({delay}); sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
while True: time.sleep(0.05)
"""
WAIT = """
import os, time
while not os.path.exists({release!r}): time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with serving(tmp_path_factory.mktemp("reclaim-holds-home"), CONFIG) as s:
        yield s


def test_each_victim_is_preempted_once_and_the_claimant_starts(server, tmp_path: Path) -> None:
    admin = Api(server, ADMIN_TOKEN)
    admin.ok("PATCH", "/api/v1/groups/default", json={"quota": {"cpu": 0, "memory": 0}})
    mem = {"memory": "4Gi"}
    ads = make_member(admin, server, "ads", "ann", quota={"cpu": 8, **mem})
    rec = make_member(admin, server, "rec", "rob", quota={"cpu": 2, **mem})
    ml = make_member(admin, server, "ml", "mia", quota={"cpu": 4, **mem})
    release = str(tmp_path / "release")
    wait = WAIT.format(release=release)

    own = [rec.submit(f"r{i}", wait, cpu=1) for i in (1, 2)]
    for j in own:
        rec.wait_state(j, {"running"})
    victims = []
    for i, delay in ((1, 0.0), (2, 1.5)):
        j = rec.submit(f"b{i}", VICTIM.format(release=release, delay=delay), cpu=1)
        rec.wait_state(j, {"running"})
        wait_for(lambda j=j: "ready" in rec.c.get(f"/api/v1/jobs/{j}/logs/main/0").text,
                 30, f"victim {j} to be ready")  # fmt: skip
        victims.append(j)
    for i in (1, 2):
        ml.wait_state(ml.submit(f"m{i}", wait, cpu=2), {"running"})

    claimant = _submit_gang(ads, wait)
    started = ads.wait_state(claimant, {"running"}, timeout=60)
    assert started["state"] == "running"

    claim_events = ads.events(claimant)
    admitted_at = next(e["time"] for e in claim_events if e["type"] == "admitted")
    for v in victims:
        ev = admin.events(v)
        types = [e["type"] for e in ev]
        assert types.count("preempted") == 1, types
        pre = next(e for e in ev if e["type"] == "preempted")
        assert pre["data"]["for_workload"] == claimant
        # Back in the queue, and not admitted again before the claimant was.
        assert "requeued" in types
        readmitted = [e["time"] for e in ev[types.index("requeued"):] if e["type"] == "admitted"]
        assert all(t >= admitted_at for t in readmitted)
        assert admin.job(v)["preemptions"] == 1
    # The claimant was admitted after the slower victim had exited, not before.
    last_requeue = max(next(e["time"] for e in admin.events(v) if e["type"] == "requeued")
                       for v in victims)
    assert admitted_at >= last_requeue
    Path(release).touch()
    for api in (ads, rec, ml, admin):
        api.close()


def _submit_gang(api: Api, code: str) -> str:
    """A gang of two 1-CPU replicas (it fits the CPU the two victims free, on any nodes)."""
    body = {"name": "claim", "roles": {"main": {
        "replicas": 2, "resources": {"cpu": 1, "memory": "256Mi"},
        "command": [PY, "-c", code]}}}  # fmt: skip
    return api.ok("POST", "/api/v1/jobs", json=body)["id"]
