"""The scoring lane (plinth/serve/app.py, ``ScoringLane``): /predict and v2 infer answered
in front of FastAPI, exactly as the app's own routes answer them; everything else passes
through to the app."""

import pytest
from fastapi.testclient import TestClient

from plinth.serve.app import BatchSettings, create_app
from plinth.serve.batcher import QueueFull
from plinth.serve.host import ModelHost

from .test_predictions_match_offline import ODD, _infer_body


@pytest.fixture(scope="module")
def lane(trained):
    app = create_app(ModelHost("ctr", trained.v1), BatchSettings(max_body_bytes=64 * 1024))
    with TestClient(app) as lane_client, TestClient(app.app) as app_client:
        yield app, lane_client, app_client


@pytest.mark.parametrize(("path", "body"), [
    ("/predict", ODD),
    ("/predict", {"instances": ODD}),
    ("/predict", [{"c1": 1.5}]),
    ("/predict", [{"c1": 1}, {"c1": "x"}] * 2),
    ("/predict", [{"n1": 2**53 + 1}]),
    ("/v2/models/ctr/infer", _infer_body(ODD)),
    ("/v2/models/ctr/versions/1/infer", _infer_body(ODD)),
    ("/v2/models/ctr/versions/7/infer", _infer_body(ODD)),
    ("/v2/models/other/infer", _infer_body(ODD)),
    ("/v2/models/ctr/infer", {"inputs": []}),
])
def test_the_lane_answers_as_the_app_routes_do(lane, path, body):
    _, through_lane, app_only = lane
    a, b = through_lane.post(path, json=body), app_only.post(path, json=body)
    assert a.status_code == b.status_code
    assert a.json() == b.json()
    assert a.headers["content-type"] == "application/json"


def test_not_json_and_other_routes_pass_through(lane):
    _, c, _ = lane
    r = c.post("/predict", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert c.get("/predict").status_code == 405  # not the lane's: FastAPI's answer
    assert c.post("/v2/models/ctr/infer/more", json={}).status_code == 404
    assert c.get("/v2/health/ready").json() == {"ready": True}


def test_a_body_over_the_limit_is_a_413_declared_or_streamed(lane):
    _, c, _ = lane
    big = b"[" + b'{"c1": 1},' * 10000 + b'{"c1": 1}]'
    r = c.post("/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit of 65536 bytes" in r.json()["error"]
    r = c.post("/predict", content=iter([big[:40000], big[40000:]]),
               headers={"content-type": "application/json"})  # chunked: counted on arrival
    assert r.status_code == 413 and "limit of 65536 bytes" in r.json()["error"]


def test_a_full_queue_is_a_503_with_retry_after(lane, monkeypatch):
    app, c, _ = lane

    def full(*_):
        raise QueueFull(4096, retry_after_s=1)

    monkeypatch.setattr(app.state.batcher, "submit_async", full)
    r = c.post("/predict", json=ODD)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "queue is full" in r.json()["error"]


def test_an_internal_failure_is_a_500_counted_in_the_metrics(lane, monkeypatch):
    app, c, _ = lane

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.state.batcher, "submit_async", broken)
    r = c.post("/predict", json=ODD)
    assert r.status_code == 500 and "internal error" in r.json()["error"]
    monkeypatch.undo()
    assert c.post("/predict", json=ODD).status_code == 200
    assert 'plinth_serve_requests_total{code="500",endpoint="predict"} 1.0' in \
        c.get("/metrics").text
