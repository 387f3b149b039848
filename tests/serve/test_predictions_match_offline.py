"""Done-when 1: served predictions equal ModelPackage's offline predictions (max abs diff
1e-5) on 1,000 rows, some with ids never seen in training, through /predict and v2 infer."""

import json

import numpy as np
import pytest

from plinth.train.package import ModelPackage

from .conftest import start_server, stop_server


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    s = start_server(trained.v1, tmp_path_factory.mktemp("srv"), "--version", "1")
    yield s
    stop_server(s)


def _infer_body(records):
    names = ["c1", "c2", "c3", "c4", "m1", "n1", "n2", "n3"]
    inputs = []
    for name in names:
        col = [r.get(name) for r in records]
        if name == "m1":
            inputs.append({"name": name, "shape": [len(col)], "datatype": "BYTES",
                           "data": [None if v is None else json.dumps(v) for v in col]})
        elif name.startswith("n"):
            inputs.append({"name": name, "shape": [len(col)], "datatype": "FP64", "data": col})
        else:
            inputs.append({"name": name, "shape": [len(col)], "datatype": "INT64", "data": col})
    return {"id": "r1", "inputs": inputs}


def test_both_endpoints_match_offline_predictions(trained, server):
    want = ModelPackage.load(trained.v1).predict_records(trained.records)
    got = []
    for start in range(0, 1000, 250):  # four requests: the batcher may join them
        r = server.client.post("/predict", json=trained.records[start:start + 250])
        assert r.status_code == 200, r.text
        assert (r.json()["model"], r.json()["version"]) == ("ctr", "1")
        got += r.json()["predictions"]
    assert len(got) == 1000
    assert np.max(np.abs(np.asarray(got) - want)) <= 1e-5

    r = server.client.post("/v2/models/ctr/infer", json=_infer_body(trained.records[:500]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["model_version"] == "1"
    [prob] = out["outputs"]
    assert (prob["name"], prob["datatype"], prob["shape"]) == ("probability", "FP32", [500])
    assert np.max(np.abs(np.asarray(prob["data"]) - want[:500])) <= 1e-5
    r = server.client.post("/v2/models/ctr/versions/1/infer",
                           json=_infer_body(trained.records[500:]))
    assert np.max(np.abs(np.asarray(r.json()["outputs"][0]["data"]) - want[500:])) <= 1e-5


def test_health_metadata_and_metrics(server):
    c = server.client
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").json() == {"ready": True}
    meta = c.get("/v2/models/ctr").json()
    assert meta["name"] == "ctr" and meta["versions"] == ["1"]
    assert {i["name"] for i in meta["inputs"]} == {"c1", "c2", "c3", "c4", "m1", "n1", "n2",
                                                    "n3"}
    assert c.post("/predict", json=[{"c1": 1}, {"c1": 2}]).status_code == 200
    text = c.get("/metrics").text
    assert 'plinth_serve_requests_total{code="200",endpoint="predict"}' in text
    assert "plinth_serve_request_seconds_bucket" in text
    assert "plinth_serve_batch_rows_count" in text
    assert 'plinth_serve_model_info{model="ctr",version="1"} 1.0' in text
    assert "plinth_serve_delta_seq 0.0" in text
