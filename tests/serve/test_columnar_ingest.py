"""The columnar ingest path (plinth/serve/protocol.py): request bodies become feature
columns without a dict per row, and accept or refuse exactly what the general path
(``json.loads`` + ``validate_records``) accepts or refuses, with the same message."""

import json

import pytest

from plinth.data.schema import Schema
from plinth.serve.protocol import (
    BadRequest,
    Columns,
    columns_from_infer,
    columns_from_predict,
    parse_json,
    records_from_predict,
)

SCHEMA = Schema.from_dict({
    "label": "y",
    "categorical": [{"name": "user-id"}, {"name": "class"}, {"name": "tags", "multi": True}],
    "numeric": [{"name": "n 1"}, {"name": "n2"}],
})  # names that are not Python identifiers (or are keywords) work as any other


def _general(raw: bytes) -> Columns:
    return Columns.from_records(SCHEMA, records_from_predict(SCHEMA, parse_json(raw)))


def _refusal(fn, *args) -> str:
    with pytest.raises(BadRequest) as e:
        fn(*args)
    return str(e.value)


GOOD = [
    pytest.param([{"user-id": 1, "class": "a", "tags": [1, "x"], "n 1": 0.5, "n2": 3}],
                 id="every-field"),
    pytest.param([{}, {"user-id": 7}, {"tags": []}, {"n2": None}], id="missing-and-empty"),
    pytest.param([{"user-id": None, "class": None, "tags": None, "n 1": None, "n2": None}],
                 id="all-null"),
    pytest.param([{"user-id": 2**63 - 1, "class": -(2**63), "n 1": 1e308, "n2": -1e308}],
                 id="extremes"),
    pytest.param([{"user-id": 123456789012345678901234567890}], id="id-beyond-int64"),
    pytest.param([{"user-id": "u", "y": 1}, {"y": "ignored", "class": ""}], id="label-ignored"),
    pytest.param([{"n 1": 0, "n2": -0.0, "tags": ["a", "b", "c"]}], id="int-as-number"),
    # Kept an int (as json.loads does): Arrow then refuses it alone, offline and served.
    pytest.param([{"n2": 2**53 + 1}, {"n2": 10**30}], id="int-beyond-float"),
    pytest.param({"instances": [{"user-id": 3}, {"tags": [4, 5]}]}, id="instances"),
]


@pytest.mark.parametrize("body", GOOD)
def test_accepted_bodies_give_the_general_path_columns(body):
    raw = json.dumps(body).encode()
    got = columns_from_predict(SCHEMA, raw)
    want = _general(raw)
    assert got.rows == want.rows
    assert got.data == want.data
    assert list(got.data) == ["user-id", "class", "tags", "n 1", "n2"]
    for name, values in got.data.items():  # same values, same Python types
        assert [type(v) for v in values] == [type(v) for v in want.data[name]], name


BAD = [
    pytest.param(b"{not json", "the body is not JSON", id="not-json"),
    pytest.param(b"[]", "non-empty list", id="empty"),
    pytest.param(b'{"instances": []}', "non-empty list", id="empty-instances"),
    pytest.param(b'{"rows": []}', '{"instances": [...]}', id="other-wrapper"),
    pytest.param(b"[1]", "instances[0] must be an object", id="row-not-object"),
    pytest.param(b'[{"user-id": 1, "colour": 3}]', "unknown features ['colour']",
                 id="unknown-feature"),
    pytest.param(b'[{"user-id": 1.5}]', "instances[0].user-id must be one integer or string",
                 id="float-id"),
    pytest.param(b'[{"user-id": true}]', "user-id must be one integer or string",
                 id="bool-id"),
    pytest.param(b'[{"tags": 7}]', "tags must be a list", id="multi-not-list"),
    pytest.param(b'[{"tags": [1, null]}]', "tags must be a list", id="null-in-multi"),
    pytest.param(b'[{"tags": [[1]]}]', "tags must be a list", id="nested-list"),
    pytest.param(b'[{"n2": "high"}]', "n2 must be a finite number", id="string-number"),
    pytest.param(b'[{"n2": false}]', "n2 must be a finite number", id="bool-number"),
    pytest.param(b'[{"n2": NaN}]', "n2 must be a finite number", id="nan"),
    pytest.param(b'[{"n2": Infinity}]', "n2 must be a finite number", id="infinity"),
    pytest.param(b'[{"n2": 1e400}]', "n2 must be a finite number", id="overflow"),
    pytest.param(b'[{}, {"class": {"a": 1}}]', "instances[1].class", id="object-value"),
]


@pytest.mark.parametrize(("raw", "says"), BAD)
def test_refused_bodies_say_what_the_general_path_says(raw, says):
    fast = _refusal(columns_from_predict, SCHEMA, raw)
    assert says in fast
    assert fast == _refusal(_general, raw)


def _infer(**cols):
    inputs = []
    for name, (dtype, data) in cols.items():
        inputs.append({"name": name.replace("_", "-").replace("n1", "n 1"),
                       "shape": [len(data)], "datatype": dtype, "data": data})
    return {"id": "r", "inputs": inputs}


def test_infer_columns_match_the_same_rows_sent_to_predict():
    body = _infer(user_id=("INT64", [1, None, 3]), tags=("BYTES", ["[1, 2]", None, "[]"]),
                  n1=("FP64", [0.5, None, 7]))
    cols, req_id = columns_from_infer(SCHEMA, body)
    rows = [{"user-id": 1, "tags": [1, 2], "n 1": 0.5}, {"user-id": None},
            {"user-id": 3, "tags": [], "n 1": 7}]
    assert req_id == "r"
    assert cols == Columns.from_records(SCHEMA, rows)  # absent inputs: null in every row


@pytest.mark.parametrize(("body", "says"), [
    (_infer(n2=("FP64", [1.0, None, "x"])), "rows[2].n2 must be a finite number or null"),
    (_infer(n2=("FP64", [float("inf")])), "rows[0].n2 must be a finite number"),
    (_infer(tags=("BYTES", ["[1, null]"])), "rows[0].tags must be a list of integer"),
    (_infer(tags=("BYTES", ["{not json"])), "must be a JSON array of ids"),
    (_infer(user_id=("INT64", [True])), "its data must be integers"),
    (_infer(user_id=("INT64", [])), "non-empty list"),
])
def test_infer_refusals_name_the_row_and_feature(body, says):
    assert says in _refusal(columns_from_infer, SCHEMA, body)


def test_concat_keeps_row_order_and_features():
    a = Columns.from_records(SCHEMA, [{"user-id": 1}, {"tags": [2]}])
    b = Columns.from_records(SCHEMA, [{"n2": 3.0}])
    joined = Columns.concat([a, b])
    assert joined.rows == 3
    assert joined == Columns.from_records(SCHEMA, [{"user-id": 1}, {"tags": [2]}, {"n2": 3.0}])
    assert Columns.concat([a]) is a
