"""Pure parsing of command-line values: ``key=value`` lists, quantities, job parameters.

Every function raises :class:`InputError` with a message that names the
option, shows what was wrong and what is allowed.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

# The server's own unit rules (a stdlib-only module: the CLI stays fast to start).
from plinth.services.units import DURATION_UNITS, MEMORY_UNITS, parse_memory_mib

RESOURCE_KEYS = ("cpu", "memory", "gpu")
_EXAMPLE = "cpu=8,memory=32Gi,gpu=2"


class InputError(ValueError):
    """Bad input from the command line or a spec file; the message says what to fix."""


#: Deepest nesting of lists and mappings a spec or parameter may have.
MAX_NESTING = 64
#: Most values (after YAML aliases are expanded) a spec or parameter may hold.
MAX_VALUES = 1_000_000
_NON_JSON = {"date": "a date", "datetime": "a timestamp", "bytes": "binary data",
             "set": "a set", "tuple": "a tuple"}  # fmt: skip


def load_yaml(text: str, what: str) -> Any:
    """Parse YAML text into plain JSON values; InputError naming the problem for
    malformed YAML, nesting too deep for the parser, or values JSON cannot carry."""
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise InputError(
            f"{what} is nested too deeply to read (more than about 300 levels of lists or "
            f"mappings); at most {MAX_NESTING} are allowed"
        ) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{what} is not valid YAML{where}: {problem}") from None
    check_plain_json(data, what)
    return data


def check_plain_json(value: Any, what: str) -> None:
    """Raise InputError unless `value` is plain JSON: text-keyed mappings, lists,
    text, finite numbers, booleans and null, at most MAX_NESTING deep, with no
    cycles (a YAML anchor inside itself) and at most MAX_VALUES values in all
    (aliases repeated to blow a spec up). The message names the path and the fix."""
    count = 0
    ancestors: set[int] = set()

    def walk(v: Any, path: str, depth: int) -> None:
        nonlocal count
        count += 1
        here = path or "the top level"
        if count > MAX_VALUES:
            raise InputError(
                f"{what}: more than {MAX_VALUES} values once YAML aliases are expanded; "
                "write the values out or make the spec smaller"
            )
        if v is None or isinstance(v, bool | int | str):
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                raise InputError(
                    f"{what}: {here} is {v}, not a finite number (JSON has no NaN or "
                    "infinity); give a number"
                )
            return
        if isinstance(v, dict | list):
            if id(v) in ancestors:
                raise InputError(
                    f"{what}: {here} contains itself (a YAML anchor used inside its own "
                    "value); write the value out"
                )
            if depth >= MAX_NESTING:
                raise InputError(
                    f"{what}: {here} is nested more than {MAX_NESTING} levels deep; flatten it"
                )
            ancestors.add(id(v))
            if isinstance(v, dict):
                for k, x in v.items():
                    if not isinstance(k, str):
                        raise InputError(
                            f"{what}: {here} has the key {k!r} ({type(k).__name__}); keys "
                            "must be text: quote it"
                        )
                    walk(x, f"{path}.{k}" if path else k, depth + 1)
            else:
                for i, x in enumerate(v):
                    walk(x, f"{path}[{i}]", depth + 1)
            ancestors.discard(id(v))
            return
        kind = _NON_JSON.get(type(v).__name__, f"a {type(v).__name__}")
        raise InputError(
            f"{what}: {here} is {kind} ({v!r:.40}), which JSON cannot carry; quote it "
            "to make it text"
        )

    walk(value, "", 0)


def parse_kv_list(text: str, option: str) -> dict[str, str]:
    """Parse ``"a=1,b=2"`` into ``{"a": "1", "b": "2"}``.

    Whitespace around items, keys and values is ignored; an empty item,
    a missing ``=``, an empty key or a repeated key is an :class:`InputError`.
    """
    result: dict[str, str] = {}
    if not text.strip():
        raise InputError(f"{option}: empty value; expected key=value pairs like {_EXAMPLE}")
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise InputError(
                f"{option}: empty item in {text!r}; separate key=value pairs by commas"
            )
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InputError(f"{option}: {item!r} is not key=value (e.g. {option} {_EXAMPLE})")
        if key in result:
            raise InputError(f"{option}: {key!r} is given twice in {text!r}")
        result[key] = value
    return result


def parse_quantities(text: str, option: str) -> dict[str, Any]:
    """Parse a resource list like ``"cpu=8,memory=32Gi,gpu=2"`` for the API.

    ``cpu`` becomes a float (cores, fractions allowed), ``gpu`` an int
    (whole devices), ``memory`` an int of MiB when unitless or the string
    with its unit (``512Mi``, ``4Gi``, ``1G``) — the server converts units.
    """
    pairs = parse_kv_list(text, option)
    result: dict[str, Any] = {}
    for key, value in pairs.items():
        if key not in RESOURCE_KEYS:
            raise InputError(
                f"{option}: unknown resource {key!r}; use {', '.join(RESOURCE_KEYS)} "
                f"(e.g. {option} {_EXAMPLE})"
            )
        if not value:
            raise InputError(f"{option}: {key} has no value")
        if key == "cpu":
            try:
                cpu = float(value)
            except ValueError:
                raise InputError(
                    f"{option}: cpu={value!r} is not a number of cores (e.g. cpu=2 or cpu=0.5)"
                ) from None
            if cpu < 0 or not math.isfinite(cpu):
                raise InputError(f"{option}: cpu={value!r} must be a finite number >= 0")
            result["cpu"] = cpu
        elif key == "gpu":
            if not value.isdigit():
                raise InputError(
                    f"{option}: gpu={value!r} must be a whole number of devices >= 0 (e.g. gpu=2)"
                )
            result["gpu"] = int(value)
        else:
            try:
                parse_memory_mib(value)
            except ValueError:
                raise InputError(
                    f"{option}: memory={value!r} is not a size; give MiB (memory=4096) "
                    f"or a unit: {', '.join(MEMORY_UNITS)} (memory=4Gi)"
                ) from None
            result["memory"] = int(value) if value.isdigit() else value
    return result


def parse_params(items: list[str], option: str = "--param") -> dict[str, Any]:
    """Parse repeated ``key=value`` job parameters; values are YAML scalars.

    ``lr=0.01`` gives a float, ``epochs=3`` an int, ``debug=true`` a bool,
    ``name=ctr`` a string, ``tags=[a, b]`` a list; ``key=`` the empty string.
    A later occurrence of a key replaces an earlier one.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"{option}: {item!r} is not key=value (e.g. {option} lr=0.01)")
        if any(c.isspace() for c in key):
            raise InputError(f"{option}: parameter name {key!r} must not contain spaces")
        params[key] = parse_scalar(value)
        check_plain_json(params[key], f"{option} {key}")
    return params


def parse_scalar(value: str) -> Any:
    """A command-line value as YAML would read it, falling back to the string itself."""
    if value == "":
        return ""
    try:
        parsed = yaml.safe_load(value)
    except (yaml.YAMLError, RecursionError):
        return value
    if isinstance(parsed, (list, dict)) and not value.lstrip().startswith(("[", "{")):
        # "a: b" parses as a mapping; on a command line it was meant as text.
        return value
    if parsed is None and value.strip() not in ("null", "~", "Null", "NULL"):
        return value
    if not isinstance(parsed, (str, int, float, bool, list, dict, type(None))):
        # Dates and timestamps: keep the text, JSON has no such type.
        return value
    return parsed


_RELATIVE = re.compile(r"^([+-])(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_S = {**DURATION_UNITS, "w": 7 * 86400.0}


def parse_time(text: str, option: str, now: datetime | None = None) -> str:
    """A time for the API, as ISO-8601 UTC: ``now``, a relative ``+2h`` / ``-30m`` /
    ``+1d`` (units s, m, h, d, w), or an ISO-8601 time (``2026-05-01T10:00``; without a
    zone it is UTC). `now` is injectable for tests."""
    value = text.strip()
    base = now or datetime.now(UTC)
    if value == "now":
        return base.isoformat()
    m = _RELATIVE.match(value)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return (
            base + timedelta(seconds=sign * float(m.group(2)) * _UNIT_S[m.group(3)])
        ).isoformat()
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{option}: {text!r} is not a time; give ISO-8601 (2026-05-01T10:00, UTC unless "
            "a zone is given), 'now', or a relative time like +2h, +30m, +1d"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.isoformat()
