"""Template documents and the layering of parameter values (default, platform preset,
engineering preset, submit): types, bounds, required values, and who may set what.
Pure: no server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from plinth.services.template_model import ParamError, TemplateDocument, resolve_params


def doc(**over: Any) -> TemplateDocument:
    body: dict[str, Any] = {
        "name": "t",
        "parameters": [
            {"name": "data", "type": "path"},
            {"name": "model", "default": "lr", "allowed": ["lr", "fm"]},
            {"name": "ps", "type": "integer", "default": 1, "min": 1, "max": 8},
            {"name": "lr", "type": "number", "default": 0.1, "min": 0},
            {"name": "debug", "type": "boolean", "default": False},
            {"name": "batch", "type": "integer", "default": 64, "layer": "engineering"},
            {"name": "cpu", "type": "number", "default": 1, "layer": "platform"},
            {"name": "extra", "type": "object", "required": False},
        ],
        "presets": {"platform": {"cpu": 2}, "engineering": {"batch": 128, "ps": 2}},
        "spec": {"roles": {"w": {"replicas": "{{ ps }}", "command": ["x"]}}},
    }
    body.update(over)
    return TemplateDocument.model_validate(body)


def test_layers_apply_in_order() -> None:
    values = resolve_params(doc(), {"data": "/d", "ps": 4})
    assert values == {"data": "/d", "model": "lr", "ps": 4, "lr": 0.1, "debug": False,
                      "batch": 128, "cpu": 2, "extra": None}  # fmt: skip
    # Without a submit value the engineering preset wins over the default.
    assert resolve_params(doc(), {"data": "/d"})["ps"] == 2


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"data": "/d", "bogus": 1}, "params.bogus: unknown parameter"),
        ({"data": "/d", "ps": "2"}, "params.ps: must be an integer, got string '2'"),
        ({"data": "/d", "ps": True}, "params.ps: must be an integer"),
        ({"data": "/d", "ps": 9}, "params.ps: must be at most 8"),
        ({"data": "/d", "ps": 0}, "params.ps: must be at least 1"),
        ({"data": "/d", "lr": -1.0}, "params.lr: must be at least 0"),
        ({"data": "/d", "model": "xgb"}, "params.model: must be one of lr, fm"),
        ({"data": "/d", "debug": "yes"}, "params.debug: must be true or false"),
        ({"data": 5}, "params.data: must be a path"),
        ({}, "params.data: required"),
        ({"data": "/d", "batch": 1}, "params.batch: set by the template's engineering preset"),
        ({"data": "/d", "cpu": 8}, "params.cpu: set by the template's platform preset"),
        ({"data": "/d", "extra": [1]}, "params.extra: must be an object"),
    ],
)
def test_submit_values_are_refused_naming_the_parameter(given: dict, problem: str) -> None:
    with pytest.raises(ParamError) as e:
        resolve_params(doc(), given)
    assert problem in str(e.value)


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"presets": {"engineering": {"cpu": 4}}}, "the engineering preset may not set it"),
        ({"presets": {"platform": {"nope": 1}}}, "presets.platform.nope: not a declared"),
        ({"presets": {"platform": {"ps": 99}}}, "presets.platform.params.ps: must be at most 8"),
        ({"spec": {"roles": {}, "group": "x"}}, "unknown job spec key(s) 'group'"),
        ({"spec": {"name": "x"}}, "needs 'roles'"),
        ({"spec": {"roles": {"w": {"command": ["{{ secret }}"]}}}}, "'secret', not a declared"),
        ({"spec": {"roles": {"w": {"command": ["{% include 'f' %}"]}}}}, "no file access"),
        ({"parameters": [{"name": "a"}, {"name": "a"}]}, "declared twice: a"),
        ({"parameters": [{"name": "a", "type": "integer", "default": "x"}]},
         "params.a: must be an integer"),
        ({"parameters": [{"name": "a", "type": "string", "min": 1}]}, "min/max need type"),
        ({"parameters": [{"name": "Bad-Name"}]}, "String should match pattern"),
        ({"spec": {"roles": {}, "params": {"a": float("nan")}}}, "must be plain JSON"),
        ({"spec": {"roles": {}, "params": {"a": "\udc80"}}}, "must be plain JSON"),
        ({"description": "x", "spec": {"roles": {}, "params": {"a": "x" * 300_000}}},
         "at most 262144 are allowed"),
    ],
)
def test_invalid_documents_are_refused(over: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as e:
        doc(**over)
    assert problem in str(e.value)


def test_submit_values_must_be_plain_json() -> None:
    with pytest.raises(ParamError, match="params must be plain JSON"):
        resolve_params(doc(), {"data": "/d", "extra": {"x": float("inf")}})
