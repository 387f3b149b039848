"""Live job metrics over the real app: who may post and read, bounds, paging."""

from __future__ import annotations

import math

import pytest

from plinth.services import job_metrics

from .conftest import Plinth, role, wait_for

# A workload token works only while its workload runs, so the job prints it and keeps running.
PRINT_TOKEN = "import os, time; print(os.environ['PLINTH_TOKEN'], flush=True); time.sleep(300)"


def url(job_id: str) -> str:
    return f"/api/v1/jobs/{job_id}/metrics"


def point(step: int, **values: float) -> dict:
    return {"role": "worker", "replica": 0, "step": step, "values": values}


def workload_token(p: Plinth, h: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A running job of the member's and its workload token (the job printed it)."""
    job = p.submit(h, {"main": role(PRINT_TOKEN)})
    p.wait(h, job["id"], {"running"}, timeout=60)  # its log exists from now on
    token = wait_for(lambda: p.log(h, job["id"], "main", 0).strip(), 60, "the token")
    return job["id"], {"Authorization": f"Bearer {token}"}


def test_post_and_read_series(plinth: Plinth) -> None:
    h, _ = plinth.member()
    job_id, scoped = workload_token(plinth, h)
    r = plinth.c.post(url(job_id), headers=scoped, json={"points": [
        point(1, loss=0.9, samples_per_s=1000.0), point(2, loss=0.7, samples_per_s=1200.0),
        {"role": "ps", "replica": 1, "time": 1764690000.0, "values": {"rows": 42}},
    ]})  # fmt: skip
    assert r.status_code == 200 and r.json() == {"accepted": 3}, r.text
    # Members of the group and admins may post too.
    assert plinth.c.post(url(job_id), headers=h, json={"points": [point(3, loss=0.5)]}).json() == {
        "accepted": 1}  # fmt: skip
    assert plinth.c.post(url(job_id), headers=plinth.admin, json={"points": [point(4, loss=0.4)]}
                         ).status_code == 200  # fmt: skip
    got = plinth.c.get(url(job_id), headers=h).json()
    pts = got["points"]
    assert [pt["step"] for pt in pts] == [1, 2, None, 3, 4]
    assert [pt["id"] for pt in pts] == sorted(pt["id"] for pt in pts) and got["last"] == pts[-1]["id"]
    assert pts[0]["values"] == {"loss": 0.9, "samples_per_s": 1000.0} and pts[0]["time"] > 1.7e9
    assert pts[2] == {"id": pts[2]["id"], "role": "ps", "replica": 1, "step": None,
                      "time": 1764690000.0, "values": {"rows": 42.0}}  # fmt: skip
    loss = plinth.c.get(url(job_id), headers=scoped, params={"name": "loss"}).json()["points"]
    assert [pt["values"] for pt in loss] == [{"loss": v} for v in (0.9, 0.7, 0.5, 0.4)]
    newer = plinth.c.get(url(job_id), headers=h, params={"after": pts[2]["id"]}).json()
    assert [pt["step"] for pt in newer["points"]] == [3, 4]
    empty = plinth.c.get(url(job_id), headers=h, params={"after": pts[-1]["id"]}).json()
    assert empty == {"points": [], "last": None}


def test_other_groups_and_other_workloads_cannot_post_or_read(plinth: Plinth) -> None:
    h, _ = plinth.member()
    other, _ = plinth.member()
    job_id, _ = workload_token(plinth, h)
    _, other_scoped = workload_token(plinth, other)
    body = {"points": [point(1, loss=1.0)]}
    assert plinth.c.post(url(job_id), headers=other, json=body).status_code == 404
    assert plinth.c.post(url(job_id), headers=other_scoped, json=body).status_code == 404
    assert plinth.c.get(url(job_id), headers=other).status_code == 404
    assert plinth.c.post(url("job-000000000000"), headers=h, json=body).status_code == 404
    assert plinth.c.post(url(job_id), json=body).status_code == 401
    assert plinth.c.get(url(job_id), headers=h).json()["points"] == []


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        ([point(1, loss=math.nan)], "points.0.values.loss"),
        ([point(1, loss=math.inf)], "points.0.values.loss"),
        ([point(1, **{"bad name": 1.0})], "points.0.values.bad name"),
        ([point(1, loss=True)], "values must be finite numbers"),
        ([point(1)], "points.0.values"),
        ([{**point(1, loss=1.0), "role": "Bad Role"}], "points.0.role"),
        ([{**point(1, loss=1.0), "extra": 1}], "points.0.extra"),
        ([point(-1, loss=1.0)], "points.0.step"),
        ([point(i, loss=1.0) for i in range(job_metrics.MAX_POINTS_PER_REQUEST + 1)],
         "at most 1000 items"),
        ([], "points"),
    ],
)
def test_bad_points_are_refused_with_422(plinth: Plinth, points: list, problem: str) -> None:
    job = plinth.submit(plinth.admin, {"main": role("pass")})
    # Starlette's json encoding refuses NaN; send it as Python's json module writes it.
    import json

    r = plinth.c.post(url(job["id"]), headers={**plinth.admin, "content-type": "application/json"},
                      content=json.dumps({"points": points}))  # fmt: skip
    assert r.status_code == 422, r.text
    assert problem in str(r.json()["detail"]), r.text
    assert plinth.c.get(url(job["id"]), headers=plinth.admin).json()["points"] == []


def test_each_job_keeps_its_newest_points(
    plinth: Plinth, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_metrics, "MAX_POINTS_PER_JOB", 10)
    job = plinth.submit(plinth.admin, {"main": role("pass")})
    other = plinth.submit(plinth.admin, {"main": role("pass")})

    def post(job_id: str, steps: range) -> list[int]:
        body = {"points": [point(i, loss=float(i)) for i in steps]}
        assert plinth.c.post(url(job_id), headers=plinth.admin, json=body).status_code == 200
        return [pt["step"] for pt in plinth.c.get(url(job_id), headers=plinth.admin).json()[
            "points"]]  # fmt: skip

    assert post(job["id"], range(6)) == list(range(6))
    assert post(other["id"], range(100, 106)) == list(range(100, 106))  # interleaved ids
    assert post(job["id"], range(6, 10)) == list(range(10))  # at the cap: all kept
    assert post(job["id"], range(10, 12)) == list(range(3, 12))  # over: down to 90%
    assert post(other["id"], range(106, 108)) == list(range(100, 108))
