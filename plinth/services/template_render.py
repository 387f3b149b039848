"""Rendering a template's spec with Jinja2, sandboxed. Pure: no I/O, no database.

A template's ``spec`` is a YAML/JSON structure whose string leaves may be Jinja
templates. A leaf that is exactly one expression, ``"{{ ps }}"``, becomes the
expression's value with its type (an integer, a mapping, ...); any other leaf is
rendered as text (``"ctr-{{ model }}"``). A leaf whose value is ``omit`` is dropped
from its mapping or list. Keys are never templated. Because values are placed into the
structure rather than into YAML text, a parameter can never inject structure.

What a template may contain is an allow-list, checked before anything runs
(:func:`check_text`): expressions, ``{% if %}`` blocks, the filters in
:data:`FILTERS` and the declared parameters. Refused, each with a message naming the
leaf: loops, macros, ``{% set %}``, includes, imports and extends (a template has no
loader, so no file access), calls of functions or methods, and attributes starting
with ``_``. On top of that the environment is Jinja2's ``SandboxedEnvironment``
(unsafe attributes raise ``SecurityError``) with ``StrictUndefined`` and no globals,
and ``*`` / ``**`` are bounded so that no expression can build a huge value.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, meta, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

__all__ = ["FILTERS", "OMIT", "TemplateRenderError", "check_spec", "render_spec"]

#: Filters a template may use: none of them can turn a small input into a big output.
FILTERS = frozenset({
    "abs", "bool", "capitalize", "d", "default", "first", "float", "int", "join", "last",
    "length", "list", "lower", "max", "min", "round", "string", "title", "trim", "upper",
})  # fmt: skip
#: Statements a template may use (everything else, e.g. for/set/include, is refused).
_STATEMENTS = (nodes.Output, nodes.If)
#: Largest string or list that ``*`` may build, and the largest exponent of ``**``.
MAX_VALUE_LEN = 64 * 1024
MAX_EXPONENT = 64
_ONE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%|\{#).)*)\}\}$", re.DOTALL)


class TemplateRenderError(ValueError):
    """A template leaf is refused or fails to render; ``str(e)`` names the leaf."""


class _Omit:
    """``omit``: a leaf with this value is left out of its mapping or list."""

    def __repr__(self) -> str:
        return "omit"


OMIT = _Omit()


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox with ``*`` and ``**`` bounded (a value can't grow without limit)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is over the limit of {MAX_EXPONENT}")
            return super().call_binop(context, operator, left, right)
        for seq, n in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
            if sized and len(seq) * n > MAX_VALUE_LEN:
                raise SecurityError(
                    f"'*' would build a value of {len(seq) * n} items; "
                    f"at most {MAX_VALUE_LEN} are allowed"
                )
        return super().call_binop(context, operator, left, right)


def _environment() -> _Sandbox:
    # No loader: {% include %} and friends cannot reach any file.
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.clear()
    env.filters = {k: v for k, v in env.filters.items() if k in FILTERS}
    return env


_ENV = _environment()


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def check_text(text: str, where: str, names: Iterable[str]) -> None:
    """Parse one leaf and refuse what the allow-list does not hold.

    ``names``: the variables the leaf may use (the declared parameters). A leaf found
    fine is remembered (with its names), so a template's leaves are parsed once per
    server, not at every submit."""
    try:
        _checked(text, frozenset(names))
    except TemplateRenderError as e:
        raise TemplateRenderError(f"{where}: {e}") from None


@functools.lru_cache(maxsize=4096)
def _checked(text: str, names: frozenset[str]) -> None:
    try:
        ast = _ENV.parse(text)
    except TemplateError as e:
        raise TemplateRenderError(f"not a valid Jinja template: {e}") from None
    except RecursionError:
        raise TemplateRenderError("the expression is nested too deeply") from None
    for node in ast.find_all(nodes.Stmt):
        if not isinstance(node, _STATEMENTS):
            kind = type(node).__name__.lower()
            hint = (
                "templates have no file access"
                if isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends)
                else "only expressions and {% if %} blocks are allowed"
            )
            raise TemplateRenderError(f"'{kind}' statements are refused: {hint}")
    for call in ast.find_all(nodes.Call):
        raise TemplateRenderError(
            f"calling functions or methods is refused (line {call.lineno}); "
            "use the allowed filters instead"
        )
    for attr in ast.find_all(nodes.Getattr):
        if attr.attr.startswith("_"):
            raise TemplateRenderError(f"access to attribute {attr.attr!r} is refused")
    for item in ast.find_all(nodes.Getitem):
        key = item.arg
        if isinstance(key, nodes.Const) and isinstance(key.value, str) and key.value[:1] == "_":
            raise TemplateRenderError(f"access to item {key.value!r} is refused")
    for f in ast.find_all(nodes.Filter):
        if f.name not in FILTERS:
            raise TemplateRenderError(
                f"filter {f.name!r} is not allowed; allowed: {', '.join(sorted(FILTERS))}"
            )
    known = set(names) | {"omit"}
    unknown = sorted(meta.find_undeclared_variables(ast) - known)
    if unknown:
        raise TemplateRenderError(
            f"uses {', '.join(map(repr, unknown))}, not a declared parameter "
            "(declare it under 'parameters')"
        )


def _leaves(value: Any, where: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{where}[{i}]")
    elif isinstance(value, str) and _is_template(value):
        yield where, value


def check_spec(spec: Mapping[str, Any], names: Iterable[str]) -> None:
    """Check every templated leaf of ``spec`` (see :func:`check_text`) without rendering."""
    allowed = set(names)
    for where, text in _leaves(spec, ""):
        check_text(text, f"spec.{where}", allowed)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> tuple[bool, Any]:
    """A checked leaf compiled once: (True, expression) for a leaf that is exactly one
    expression (its value keeps its type), else (False, template) rendering text."""
    whole = _ONE_EXPRESSION.match(text)
    if whole is not None:
        return True, _ENV.compile_expression(whole["expr"], undefined_to_none=False)
    return False, _ENV.from_string(text)


def _render_leaf(text: str, where: str, values: Mapping[str, Any]) -> Any:
    check_text(text, where, values.keys())
    context = {**values, "omit": OMIT}
    try:
        native, compiled = _compiled(text)
        if native:
            result = compiled(**context)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return result
        return compiled.render(context)
    except SecurityError as e:
        raise TemplateRenderError(f"{where}: refused by the sandbox: {e}") from None
    except RecursionError:
        raise TemplateRenderError(f"{where}: the expression is nested too deeply") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as e:
        raise TemplateRenderError(f"{where}: {type(e).__name__}: {e}") from None


def _render(value: Any, where: str, values: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            r = _render(v, f"{where}.{k}" if where else str(k), values)
            if r is not OMIT:
                out[k] = r
        return out
    if isinstance(value, list):
        items = (_render(v, f"{where}[{i}]", values) for i, v in enumerate(value))
        return [r for r in items if r is not OMIT]
    if isinstance(value, str) and _is_template(value):
        return _render_leaf(value, f"spec.{where}", values)
    return value


def render_spec(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with every templated leaf rendered against the parameter ``values``.

    Raises :class:`TemplateRenderError` (naming the leaf) for a refused construct, an
    undefined name, an error while evaluating, or a result that is not plain JSON."""
    out = _render(spec, "", values)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TemplateRenderError(f"spec: the rendered spec is not plain JSON: {e}") from None
    return out
