"""Done-when 5 (server part): bad requests get a 4xx saying what is wrong, and the server
keeps serving."""

import pytest

from .conftest import start_server, stop_server


@pytest.fixture(scope="module")
def small_server(trained, tmp_path_factory):
    s = start_server(trained.v1, tmp_path_factory.mktemp("srv"), "--max-batch-rows", "64",
                     "--max-queue-rows", "256")
    yield s
    stop_server(s)


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), [
    ("post", "/v2/models/nope/infer", {"inputs": []}, 404, "unknown model 'nope'"),
    ("get", "/v2/models/nope", None, 404, "unknown model"),
    ("post", "/v2/models/ctr/versions/9/infer", {"inputs": []}, 404, "no version '9'"),
    ("post", "/predict", b"{not json", 400, "not JSON"),
    ("post", "/predict", [], 400, "non-empty list"),
    ("post", "/predict", {"rows": []}, 400, "instances"),
    ("post", "/predict", [{"c1": 1, "colour": 3}], 400, "unknown features ['colour']"),
    ("post", "/predict", [{"c1": 1.5}], 400, "instances[0].c1 must be one integer or string"),
    ("post", "/predict", [{"m1": 7}], 400, "m1 must be a list"),
    ("post", "/predict", [{"n1": "high"}], 400, "n1 must be a finite number"),
    ("post", "/predict", [{"c1": 1}] * 65, 413, "65 rows in one request; at most 64"),
    ("post", "/v2/models/ctr/infer", {"inputs": [{"name": "c1", "shape": [2],
                                                  "datatype": "INT64", "data": [1]}]},
     400, "data must be a list of 2"),
    ("post", "/v2/models/ctr/infer", {"inputs": [{"name": "c1", "shape": [1],
                                                  "datatype": "FP32", "data": [1.0]}]},
     400, "datatype must be one of"),
    ("post", "/v2/models/ctr/infer", {"inputs": [{"name": "c1", "shape": [1]}]},
     400, "lacks ['datatype', 'data']"),
    ("post", "/v2/models/ctr/infer", {"inputs": [
        {"name": "c1", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "c2", "shape": [2], "datatype": "INT64", "data": [1, 2]}]},
     400, "different batch sizes"),
])
def test_bad_request_is_refused_and_the_server_keeps_serving(
        trained, method, path, body, status, says, small_server):
    c = small_server.client
    if isinstance(body, bytes):
        r = c.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        r = c.request(method, path, json=body) if body is not None else c.request(method, path)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    ok = c.post("/predict", json=trained.records[:3])
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3


def test_mixed_id_types_in_one_batch_fail_only_the_odd_request(trained, small_server):
    """Strings and integers for one field cannot share an Arrow column: the batch is
    retried request by request, so only a request that cannot be scored alone fails."""
    import concurrent.futures as cf

    c = small_server.client
    bodies = [[{"c1": "user-7"}], [{"c1": 7}], trained.records[:2]]
    with cf.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda b: c.post("/predict", json=b).status_code, bodies * 4))
    assert codes == [200] * 12
