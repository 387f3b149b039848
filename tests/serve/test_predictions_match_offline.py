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


ODD = [  # what real traffic sends besides clean rows: gaps, nulls, extremes, unseen ids
    {},
    {"c1": None, "c2": None, "c3": None, "c4": None, "m1": None, "n1": None},
    {"c1": 2**63 - 1, "c3": -(2**63), "m1": [], "n1": 1e300, "n2": -1e300, "n3": 0},
    {"c1": 10**15, "m1": [10**15, -(10**15), 10**15], "n2": -0.0},
    {"c2": 3, "m1": [1, 2, 3, 4, 5, 6, 7, 8], "n3": 123456},
]


def test_odd_rows_match_offline_through_both_endpoints(trained, server):
    pkg = ModelPackage.load(trained.v1)
    rows = ODD + trained.records[:5]
    want = pkg.predict_records(rows)
    np.testing.assert_allclose(pkg.predict_columns(
        {k: [r.get(k) for r in rows] for k in ("c1", "m1", "n1", "n2", "n3", "c2", "c3", "c4")},
        len(rows)), want, rtol=0, atol=1e-7)
    r = server.client.post("/predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    assert np.max(np.abs(np.asarray(r.json()["predictions"]) - want)) <= 1e-5
    r = server.client.post("/v2/models/ctr/infer", json=_infer_body(rows))
    assert r.status_code == 200, r.text
    assert np.max(np.abs(np.asarray(r.json()["outputs"][0]["data"]) - want)) <= 1e-5


def test_predict_columns_refuses_a_column_of_the_wrong_length(trained):
    pkg = ModelPackage.load(trained.v1)
    with pytest.raises(ValueError, match="'c1' has 2 values for 3 rows"):
        pkg.predict_columns({"c1": [1, 2]}, 3)


def test_a_row_arrow_cannot_hold_is_a_4xx_offline_and_served(trained, server):
    """An integer beyond float64's exact range: predict_records raises, the server says
    422 (never 500) and keeps serving."""
    with pytest.raises(Exception, match="exactly representable"):
        ModelPackage.load(trained.v1).predict_records([{"n1": 2**53 + 1}])
    r = server.client.post("/predict", json=[{"n1": 2**53 + 1}])
    assert r.status_code == 422 and "cannot be scored" in r.json()["error"]
    assert server.client.post("/predict", json=trained.records[:2]).status_code == 200
