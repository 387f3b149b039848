"""Schema parsing and its error messages."""

import pytest

from plinth.data.schema import NumericTransform, Pooling, Schema, SchemaError


def test_parse_short_and_long_forms(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        "label: click\ncategorical: [c1, {name: tags, multi: true, pooling: mean}, "
        "{name: c2, salt: c1}]\nnumeric: [n1, {name: n2, transform: log1p, fill: -1}]\n"
    )
    s = Schema.from_yaml(p)
    assert s.categorical_names == ["c1", "tags", "c2"]
    assert s.categorical[1].multi and s.categorical[1].pooling is Pooling.MEAN
    assert s.categorical[2].hash_salt == "c1"
    assert s.numeric[1].transform is NumericTransform.LOG1P and s.numeric[1].fill == -1.0
    assert s.columns[-1] == "click"
    assert Schema.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"categorical": ["a"]}, "label"),
        ({"label": "y"}, "no features"),
        ({"label": "y", "categorical": ["a", "a"]}, "more than once"),
        ({"label": "y", "categorical": ["y"]}, "also listed as a feature"),
        ({"label": "y", "categorical": [{"name": "a", "pooling": "max"}]}, "pooling must be one of"),
        ({"label": "y", "numeric": [{"name": "a", "transform": "sqrt"}]}, "transform must be one of"),
        ({"label": "y", "numeric": [{"name": "a", "bins": 3}]}, "unknown keys"),
        ({"label": "y", "features": []}, "unknown schema keys"),
    ],
)
def test_errors_name_the_problem(d, message):
    with pytest.raises(SchemaError, match=message):
        Schema.from_dict(d)


def test_missing_file_is_a_schema_error(tmp_path):
    with pytest.raises(SchemaError, match="cannot read schema file"):
        Schema.from_yaml(tmp_path / "nope.yaml")
