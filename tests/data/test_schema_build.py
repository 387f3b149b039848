"""Schema extensions for sample building: labels, weights, buckets, crosses, fingerprint."""

from __future__ import annotations

import pytest

from plinth.data.schema import LabelMatch, Schema, SchemaError

FULL = {
    "label": "click",
    "labels": [{"name": "click", "event": "click", "window": "30m"},
               {"name": "conv", "event": "conversion", "window": "1d", "match": "user_item"}],
    "weight": "w",
    "categorical": ["u", {"name": "tags", "multi": True},
                    {"name": "p_b", "bucketize": "price", "boundaries": [1, 10]},
                    {"name": "p_q", "bucketize": "price", "quantiles": 4},
                    {"name": "u_x_i", "cross": ["u", "i"]}],
    "numeric": ["price"],
}


def test_parse_round_trip_and_properties(tmp_path):
    s = Schema.from_dict(FULL)
    assert [x.window_s for x in s.labels] == [1800.0, 86400.0]
    assert s.labels[1].match is LabelMatch.USER_ITEM
    assert s.label_names == ["click", "conv"]
    assert [f.name for f in s.derived] == ["p_b", "p_q", "u_x_i"]
    assert [f.name for f in s.unresolved] == ["p_q"]
    assert Schema.from_dict(s.to_dict()) == s
    s.to_yaml(tmp_path / "s.yaml")
    assert Schema.from_yaml(tmp_path / "s.yaml") == s
    resolved = s.with_boundaries({"p_q": [2.0, 3.0, 5.0]})
    assert resolved.unresolved == () and resolved.categorical[3].boundaries == (2.0, 3.0, 5.0)


def test_fingerprint_is_stable_and_tracks_content():
    a, b = Schema.from_dict(FULL), Schema.from_dict(dict(FULL))
    assert a.fingerprint() == b.fingerprint() and a.fingerprint().startswith("sha256:")
    assert a.with_boundaries({"p_q": [1.0]}).fingerprint() != a.fingerprint()


def test_a_plain_schema_keeps_its_exact_form():
    d = {"label": "y", "categorical": ["c"], "numeric": ["n"]}
    assert set(Schema.from_dict(d).to_dict()) == {"label", "categorical", "numeric"}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"labels": [{"name": "click", "event": "click", "window": "soon"}]},
         r"labels\[0\] \(click\): window must be a duration"),
        ({"labels": [{"name": "click", "event": "click"}]}, r"\(click\): window is required"),
        ({"labels": [{"name": "click", "window": "1h", "match": "session"}]},
         r"\(click\): match must be one of"),
        ({"labels": [{"name": "click", "window": "1h"}, {"name": "click", "window": "2h"}]},
         "more than once"),
        ({"labels": [{"name": "other", "window": "1h"}]}, "must be one of the labels"),
        ({"weight": "u"}, "weight 'u' is also a feature"),
        ({"weight": 3}, "schema.weight must name"),
        ({"categorical": [{"name": "b", "bucketize": "price"}]}, r"\(b\): bucketize needs"),
        ({"categorical": [{"name": "b", "bucketize": "price", "boundaries": [3, 1]}]},
         r"\(b\): boundaries must be strictly increasing"),
        ({"categorical": [{"name": "b", "bucketize": "price", "quantiles": 1}]},
         r"\(b\): quantiles must be"),
        ({"categorical": [{"name": "b", "boundaries": [1]}]}, r"\(b\): \['boundaries'\] only go"),
        ({"categorical": [{"name": "x", "cross": ["u"]}]}, r"\(x\): cross must list two"),
        ({"categorical": [{"name": "x", "cross": ["u", "i"], "multi": True}]},
         r"\(x\): a bucketized or crossed field cannot be multi"),
        ({"categorical": [{"name": "x", "cross": ["x", "i"]}]}, r"cannot derive from \['x'\]"),
        ({"categorical": [{"name": "t", "multi": True}, {"name": "x", "cross": ["t", "i"]}]},
         r"\(x\): cannot derive from \['t'\]"),
    ],
)
def test_errors_name_the_field(patch, message):
    d = {"label": "click", "categorical": ["u"], **patch}
    if "labels" not in patch:
        d["labels"] = [{"name": "click", "window": "30m"}]
    with pytest.raises(SchemaError, match=message):
        Schema.from_dict(d)
