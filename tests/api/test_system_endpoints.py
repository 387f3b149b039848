"""/healthz, /metrics, /openapi.json, /docs, /api/v1/nodes."""

from __future__ import annotations

from .conftest import Plinth, role, wait_for


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


def test_health_openapi_docs(plinth: Plinth) -> None:
    assert plinth.c.get("/healthz").json() == {"status": "ok"}
    spec = plinth.c.get("/openapi.json").json()
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}/logs/{role}/{replica}",
        "/api/v1/files",
        "/api/v1/groups",
        "/api/v1/users",
        "/api/v1/nodes",
        "/api/v1/whoami",
    ):
        assert path in spec["paths"], path
    assert plinth.c.get("/docs").status_code == 200


def test_metrics_track_queue_running_and_resources(plinth: Plinth) -> None:
    h, _ = plinth.member()
    text = plinth.c.get("/metrics").text
    assert _metric(text, "plinth_queue_length") == 0
    assert _metric(text, "plinth_executor_poll_errors_total") == 0
    job = plinth.submit(
        h,
        {
            "main": {
                **role("import time; time.sleep(30)"),
                "resources": {"cpu": 1.5, "memory": "1Gi", "gpu": 1},
            }
        },
    )
    plinth.wait(h, job["id"], {"running"})
    text = plinth.c.get("/metrics").text
    assert _metric(text, "plinth_running_workloads") == 1
    assert 'plinth_resources_in_use{resource="cpu"} 1.5' in text
    assert 'plinth_resources_in_use{resource="memory"} 1024.0' in text
    assert 'plinth_resources_in_use{resource="gpu"} 1.0' in text
    nodes = plinth.c.get("/api/v1/nodes", headers=h).json()
    assert nodes == [
        {
            "name": "n1",
            "address": "127.0.0.1",
            "capacity": {"cpu": 8.0, "memory": 16384, "gpu": 2},
            "used": {"cpu": 1.5, "memory": 1024, "gpu": 1},
        }
    ]
    waiting = plinth.submit(h, {"main": {**role("print(1)"), "resources": {"cpu": 0.1, "gpu": 2}}})
    wait_for(
        lambda: _metric(plinth.c.get("/metrics").text, "plinth_queue_length") == 1, 10, "queue 1"
    )
    assert plinth.job(h, waiting["id"])["state"] == "pending"
