"""Fair scanning (issue 8): one group's backlog never hides another group's queue heads;
``explain`` says what the loop really considers; pending limits per user and group.

The backlog is 1,500 pending jobs of group ``big`` (over its quota: none can start),
inserted in one statement, all queued before the small group's job.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from plinth.config import ServerConfig
from plinth.services.auth import Principal
from plinth.services.errors import TooMany
from plinth.services.groups import create_group
from plinth.services.jobs import submit_job
from plinth.services.queue import explain_job
from plinth.services.specs import GroupCreate, JobSpec, UserCreate
from plinth.services.users import create_user
from plinth.store.models import Event, Group, User, Workload, utcnow

from .rig import CFG, PY, SLEEP, Rig

BACKLOG = 1500


def _spec(cpu: float = 0.5) -> JobSpec:
    return JobSpec.model_validate({"name": "t", "roles": {"main": {
        "resources": {"cpu": cpu, "memory": "32Mi"}, "command": [PY, "-c", SLEEP]}}})


def _member(rig: Rig, group: str, user: str, **body) -> Principal:
    with rig.db.session() as s:
        create_group(s, rig.admin, GroupCreate.model_validate({"name": group, **body}))
        create_user(s, rig.admin, UserCreate(name=user, group=group))
        gid = s.scalar(select(Group.id).where(Group.name == group))
        uid = s.scalar(select(User.id).where(User.name == user))
    return Principal(uid, user, gid, group, False)


def _backlog(rig: Rig, p: Principal, n: int) -> None:
    """`n` pending jobs of `p` that can never start (1 cpu each, group quota 0.5 cpu,
    no borrowing), queued an hour ago, written in one statement."""
    t0 = utcnow() - timedelta(hours=1)
    spec = _spec(cpu=1).model_dump(mode="json") | {"group": p.group, "max_runtime": 3600.0,
                                                  "priority": "normal"}
    rows = [{
        "id": f"job-backlog{i:05d}", "kind": "job", "name": "b", "group_id": p.group_id,
        "user_id": p.user_id, "state": "pending", "reason": "", "spec": spec, "code": None,
        "demand": {"cpu": 1.0, "memory": 32, "gpu": 0}, "attempt": 0, "failures": 0,
        "retries": 0, "max_runtime_s": 3600.0, "priority": "normal", "preemptions": 0,
        "created_at": t0 + timedelta(milliseconds=i), "queued_at": t0 + timedelta(milliseconds=i),
    } for i in range(n)]  # fmt: skip
    with rig.db.session() as s:
        s.execute(insert(Workload), rows)


@pytest.mark.slow
def test_a_backlog_does_not_hide_another_groups_job(rig: Rig) -> None:
    big = _member(rig, "big", "bea", quota={"cpu": 0.5, "memory": 1024},
                  borrow_limit={"cpu": 0})
    small = _member(rig, "small", "sam", quota={"cpu": 1, "memory": 1024})
    _backlog(rig, big, BACKLOG)
    loop = rig.loop()
    with rig.db.session() as s:
        jid = submit_job(s, small, _spec(), rig.cfg, loop.capacity()).id
    policy = rig.cfg.scheduler.policy()
    with rig.db.read() as s:
        # What explain says is what the loop will do: it starts this cycle.
        e = explain_job(s, small, jid, loop.nodes, policy)
        assert e["outcome"] == "fit" and "admitted this cycle" in e["text"]
        # A job beyond its group's first heads says it is not considered yet.
        last = explain_job(s, rig.admin, f"job-backlog{BACKLOG - 1:05d}", loop.nodes, policy)
        assert last["position"] is None
        assert f"number {BACKLOG} in group big's queue" in last["text"]
        assert f"first {policy.queue_heads_per_group} pending" in last["text"]
        head = explain_job(s, rig.admin, "job-backlog00000", loop.nodes, policy)
        assert head["outcome"] == "wait" and "group big" in head["reason"]
    loop.admit_and_launch()  # one cycle
    assert rig.job(jid).state in ("admitted", "running")
    with rig.db.read() as s:
        types = list(s.scalars(select(Event.type).where(Event.workload_id == jid)))
    assert "admitted" in types


def test_pending_limits_per_user_and_group(rig: Rig) -> None:
    cfg = ServerConfig.model_validate(
        {**CFG, "scheduler": {"max_pending_per_user": 2, "max_pending_per_group": 3}})
    a = _member(rig, "lim", "ann", quota={"cpu": 0.1, "memory": 64}, borrow_limit={"cpu": 0})
    with rig.db.session() as s:
        create_user(s, rig.admin, UserCreate(name="abe", group="lim"))
        b = Principal(s.scalar(select(User.id).where(User.name == "abe")), "abe", a.group_id,
                      "lim", False)
    nodes = rig.loop().capacity()
    for _ in range(2):
        with rig.db.session() as s:
            submit_job(s, a, _spec(), cfg, nodes)
    with rig.db.session() as s, pytest.raises(TooMany) as err:
        submit_job(s, a, _spec(), cfg, nodes)
    assert "max_pending_per_user = 2" in err.value.message and err.value.status == 429
    with rig.db.session() as s:
        submit_job(s, b, _spec(), cfg, nodes)
    with rig.db.session() as s, pytest.raises(TooMany) as err:
        submit_job(s, b, _spec(), cfg, nodes)
    assert "group 'lim' has 3 pending" in err.value.message
    assert "max_pending_per_group = 3" in err.value.message
