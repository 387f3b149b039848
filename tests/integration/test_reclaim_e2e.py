"""Done-when 2 (issue 3): borrowing and reclaim end to end on a real server.

Group A (nominal 2 cpu, may borrow) runs 4 cpu by borrowing group B's idle quota on a
4-cpu node. When B submits, A's borrowed job is preempted at the next cycle (SIGTERM,
then the grace period), B's job starts, and A's job waits with its original queue time
and finishes later. The events tell every step.

The scenario runs on each executor: ``local`` (one 4-cpu node) and ``ray`` (issue 15:
the session's real Ray cluster on loopback, whose CPU-only nodes are ``head`` and a
2-cpu node ``q1`` this module adds -- 4 cpu as well; the GPU node ``w1`` takes no CPU
work).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._helpers import ADMIN_TOKEN, Api, make_member, serving, wait_for

GRACE_S = 3.0
CONFIG = {
    "nodes": [{"name": "n1", "cpu": 4, "memory": "8Gi"}],
    "scheduler": {"poll_interval": 0.05, "reclaim_grace": f"{GRACE_S}s"},
    "jobs": {"grace": "1s"},
}

# Runs until the file named in argv-free form exists; a SIGTERM is answered by writing a
# checkpoint and exiting 0 at once (what a trainer does), so the stop is well within the
# grace period. A second attempt (after preemption) finishes at once.
BORROWER = """
import os, signal, sys, time
if os.environ["PLINTH_ATTEMPT"] != "0":
    print("resumed from checkpoint", flush=True); sys.exit(0)
def term(*_):
    print("SIGTERM: checkpoint saved", flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("running on borrowed quota", flush=True)
while True: time.sleep(0.05)
"""
WAIT_FOR_FILE = """
import os, sys, time
path = {path!r}
while not os.path.exists(path): time.sleep(0.02)
print("released", flush=True)
"""


@pytest.fixture(scope="module", params=["local", "ray"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    home = tmp_path_factory.mktemp("reclaim-home")
    if request.param == "local":
        with serving(home, CONFIG) as s:
            yield s
        return
    cluster = request.getfixturevalue("ray_cluster")
    cluster.add_node("q1", num_cpus=2, memory=4 << 30)
    try:
        config = {k: v for k, v in CONFIG.items() if k != "nodes"}
        config["executor"] = cluster.server_executor(tmp_path_factory.mktemp("agents"))
        with serving(home, config) as s:
            admin = Api(s, ADMIN_TOKEN)
            nodes = {n["name"] for n in admin.ok("GET", "/api/v1/nodes")}
            admin.close()
            assert {"head", "w1", "q1"} <= nodes, nodes  # the Ray cluster's
            yield s
    finally:
        cluster.remove_node("q1")


def test_borrowed_job_is_preempted_when_lender_needs_its_quota(server, tmp_path: Path) -> None:
    admin = Api(server, ADMIN_TOKEN)
    # The default group (the admin's) would otherwise lend the node too: make B the only
    # lender, as the scenario has it.
    admin.ok("PATCH", "/api/v1/groups/default", json={"quota": {"cpu": 0, "memory": 0}})
    quota = {"cpu": 2, "memory": "4Gi"}
    a = make_member(admin, server, "team-a", "alice", quota=quota)
    b = make_member(admin, server, "team-b", "bob", quota=quota, borrow_limit={"cpu": 0})
    release_own, release_b = tmp_path / "release-own", tmp_path / "release-b"

    a_own = a.submit("a-own", WAIT_FOR_FILE.format(path=str(release_own)), cpu=2)
    a.wait_state(a_own, {"running"})
    a_borrow = a.submit("a-borrow", BORROWER, cpu=2)
    a.wait_state(a_borrow, {"running"})
    # Its SIGTERM handler is installed once it has printed (else SIGTERM would kill it).
    wait_for(lambda: "borrowed quota" in a.c.get(f"/api/v1/jobs/{a_borrow}/logs/main/0").text,
             30, "the borrowed job to be ready")  # fmt: skip
    queued_at = a.job(a_borrow)["queued_at"]
    admitted = next(e for e in a.events(a_borrow) if e["type"] == "admitted")
    assert admitted["data"]["borrows"] is True and "borrowing" in admitted["reason"]
    status = {g["name"]: g["status"] for g in admin.ok("GET", "/api/v1/groups")}
    assert status["team-a"]["used"]["cpu"] == 4 and status["team-a"]["borrowed"]["cpu"] == 2
    assert status["team-b"]["lent"]["cpu"] == 2

    b_job = b.submit("b-job", WAIT_FOR_FILE.format(path=str(release_b)), cpu=2)

    # A's borrowed job is preempted for B's, stops on SIGTERM, and goes back to pending.
    wait_for(lambda: any(e["type"] == "requeued" for e in a.events(a_borrow)), 30,
             "the borrowed job to be requeued")  # fmt: skip
    b.wait_state(b_job, {"running"})
    waiting = a.job(a_borrow)
    assert waiting["state"] in ("pending", "admitted", "running")
    assert waiting["queued_at"] == queued_at  # original queue time kept
    assert waiting["failures"] == 0 and waiting["preemptions"] == 1  # no retry used
    assert waiting["state"] == "pending", "node is full (a-own + b-job): a-borrow must wait"

    ev = a.events(a_borrow)
    types = [e["type"] for e in ev]
    i_pre = types.index("preempted")
    pre = ev[i_pre]
    assert pre["data"]["for_workload"] == b_job
    assert "team-b" in pre["reason"] and "cpu" in pre["reason"] and "team-a" in pre["reason"]
    assert "SIGTERM" in pre["reason"]
    exited = next(e for e in ev[i_pre:] if e["type"] == "replica_exited")
    assert exited["data"]["exit_code"] == 0  # it checkpointed on SIGTERM, not SIGKILLed
    requeued = ev[types.index("requeued")]
    assert requeued["data"]["to_state"] == "pending" and "original queue time" in requeued["reason"]
    # B's job started only after the borrowed job had released the cpu.
    b_running = next(e for e in b.events(b_job) if e["type"] == "running")
    assert b_running["time"] >= requeued["time"]
    # explain says why A's job waits now, with numbers.
    text = a.ok("GET", f"/api/v1/jobs/{a_borrow}/explain")["text"]
    assert "waits:" in text and "cpu" in text

    # When B's job ends, A's job runs again (attempt 1) and finishes.
    release_b.touch()
    b.wait_state(b_job, {"succeeded"})
    done = a.wait_state(a_borrow, {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["attempt"] == 1
    assert done["queued_at"] == queued_at
    final_types = [e["type"] for e in a.events(a_borrow)]
    assert final_types[:1] == ["submitted"]
    order = ["admitted", "running", "preempted", "requeued", "admitted", "running", "succeeded"]
    it = iter(final_types)
    assert all(t in it for t in order), final_types  # in this order (replica events between)
    release_own.touch()
    a.wait_state(a_own, {"succeeded"})
    for api in (a, b, admin):
        api.close()
