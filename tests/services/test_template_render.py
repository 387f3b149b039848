"""The template sandbox: typed values, ``omit``, and every refusal (code execution, file
access, unbounded values) with a message naming the leaf. Pure: no server."""

from __future__ import annotations

import pytest

from plinth.services.template_render import TemplateRenderError, check_spec, render_spec

VALUES = {"ps": 2, "model": "deepfm", "cfg": {"a": 1}, "none": None, "data": "/d"}


@pytest.mark.parametrize(
    ("leaf", "want"),
    [
        ("{{ ps }}", 2),  # one expression keeps its type
        ("{{ cfg }}", {"a": 1}),
        ("ctr-{{ model }}", "ctr-deepfm"),  # text around an expression renders as text
        ("{{ data }}/train", "/d/train"),
        ("{{ ps * 2 }}", 4),
        ("{{ model | upper }}", "DEEPFM"),
        ("{{ none or data ~ '/schema.yaml' }}", "/d/schema.yaml"),
        ("{% if ps > 1 %}many{% else %}one{% endif %}", "many"),
        ("plain text", "plain text"),
    ],
)
def test_leaves_render(leaf: str, want: object) -> None:
    assert render_spec({"x": leaf}, VALUES) == {"x": want}


def test_omit_drops_keys_and_items() -> None:
    spec = {"a": "{{ none or omit }}", "b": ["{{ omit }}", 1, "{{ ps }}"], "c": 3}
    assert render_spec(spec, VALUES) == {"b": [1, 2], "c": 3}


def test_a_value_cannot_inject_structure() -> None:
    evil = {"model": "x\nroles: {evil: {command: [sh]}}"}
    out = render_spec({"name": "{{ model }}", "roles": {}}, evil)
    assert out == {"name": evil["model"], "roles": {}}


@pytest.mark.parametrize(
    ("leaf", "problem"),
    [
        ("{{ ''.__class__.__mro__ }}", "attribute '__mro__' is refused"),
        ("{{ model.__class__ }}", "attribute '__class__' is refused"),
        ("{{ model['__class__'] }}", "item '__class__' is refused"),
        ("{{ model.upper() }}", "calling functions or methods is refused"),
        ("{% include '/etc/passwd' %}", "templates have no file access"),
        ("{% import 'x.j2' as x %}", "templates have no file access"),
        ("{% extends '/etc/hosts' %}", "templates have no file access"),
        ("{% for i in cfg %}x{% endfor %}", "'for' statements are refused"),
        ("{% set x = 1 %}", "'assign' statements are refused"),
        ("{% macro m() %}{% endmacro %}", "'macro' statements are refused"),
        ("{{ model | attr('__class__') }}", "filter 'attr' is not allowed"),
        ("{{ model | format }}", "filter 'format' is not allowed"),
        ("{{ lipsum }}", "'lipsum', not a declared parameter"),
        ("{{ nope }}", "'nope', not a declared parameter"),
        ("{{ model * 100000 }}", "at most 65536"),
        ("{{ 10 ** 100 }}", "exponent 100 is over the limit"),
        ("{{ none.attr }}", "UndefinedError"),
        ("{{ model", "not a valid Jinja template"),
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply"),
    ],
)
def test_refused_with_the_leaf_named(leaf: str, problem: str) -> None:
    with pytest.raises(TemplateRenderError) as e:
        render_spec({"roles": {"w": {"command": ["python", leaf]}}}, VALUES)
    assert str(e.value).startswith("spec.roles.w.command[1]: ")
    assert problem in str(e.value)


def test_check_spec_refuses_before_anything_runs() -> None:
    check_spec({"a": "{{ ps }}", "b": ["x-{{ model }}"]}, {"ps", "model"})
    with pytest.raises(TemplateRenderError, match=r"spec\.b\[0\]: .*'other'"):
        check_spec({"a": "{{ ps }}", "b": ["{{ other }}"]}, {"ps"})


def test_the_sandbox_holds_even_without_the_static_checks() -> None:
    # Defence in depth: the environment itself is Jinja2's sandbox with no globals.
    from jinja2.sandbox import SecurityError

    from plinth.services.template_render import _ENV

    with pytest.raises(SecurityError):
        _ENV.from_string("{{ x.__class__.__subclasses__() }}").render(x="")
    assert "cycler" not in _ENV.globals and "range" not in _ENV.globals
