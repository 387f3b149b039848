"""The build spec: which raw logs, which schema, where the samples go (YAML).

::

    schema: schema.yaml               # a schema file (relative to this spec) or a mapping
    output: dataset                   # the dataset directory
    impressions: impressions          # a Parquet file, a directory (*.parquet below it) or a glob
    events: events
    user_features: {path: user_features, ttl: 30d}   # ttl: older snapshots count as missing
    item_features: item_features
    days: {from: 2026-11-01, to: 2026-11-07}          # optional: impression days to build

Each input may also be ``{path: ..., columns: {ts: event_time, ...}}`` to map the
standard column names (below) to the ones the files use.

Standard columns: impressions ``request_id, user_id, item_id, ts`` (+ context fields);
events ``event, ts`` and ``request_id`` (``item_id`` too when present) for labels matched
by request, ``user_id, item_id`` for labels matched by user+item; user snapshots
``user_id, ts``, item snapshots ``item_id, ts`` (+ feature fields). ``ts`` is an Arrow
timestamp (any unit; time zones are converted to UTC) or an ISO-8601 string.

Errors are :class:`SpecError` and name the key and what to change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plinth.data.schema import Schema, SchemaError, parse_duration_s

__all__ = ["INPUT_KEYS", "BuildSpec", "InputSpec", "SpecError", "load_spec"]

# Input name -> (the entity key its rows join on, the standard columns it must have).
INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "impressions": ("request_id", "user_id", "item_id", "ts"),
    "events": ("event", "ts"),
    "user_features": ("user_id", "ts"),
    "item_features": ("item_id", "ts"),
}


class SpecError(ValueError):
    """The build spec is malformed; the message names the key and the fix."""


@dataclass(frozen=True)
class InputSpec:
    """One raw input: where its files are, how its columns are named, a snapshot TTL."""

    name: str
    path: str
    columns: Mapping[str, str] = field(default_factory=dict)  # standard name -> file's name
    ttl_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "columns": dict(self.columns), "ttl_s": self.ttl_s}


@dataclass(frozen=True)
class BuildSpec:
    """A validated build spec; paths are absolute."""

    schema: Schema
    output: Path
    impressions: InputSpec
    events: InputSpec
    user_features: InputSpec | None = None
    item_features: InputSpec | None = None
    first_day: dt.date | None = None
    last_day: dt.date | None = None

    @property
    def inputs(self) -> list[InputSpec]:
        return [i for i in (self.impressions, self.events, self.user_features,
                            self.item_features) if i is not None]

    def logic_fingerprint(self) -> str:
        """Hash of everything but the data that decides a day's rows (schema, mappings, TTLs)."""
        text = json.dumps({"schema": self.schema.to_dict(),
                           "inputs": {i.name: {"columns": dict(i.columns), "ttl_s": i.ttl_s}
                                      for i in self.inputs}}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON form with absolute paths (what a platform job receives)."""
        d: dict[str, Any] = {"schema": self.schema.to_dict(), "output": str(self.output)}
        for i in self.inputs:
            d[i.name] = {"path": i.path, "columns": dict(i.columns)}
            if i.ttl_s is not None:
                d[i.name]["ttl"] = i.ttl_s
        if self.first_day or self.last_day:
            d["days"] = {"from": str(self.first_day or ""), "to": str(self.last_day or "")}
            d["days"] = {k: v for k, v in d["days"].items() if v}
        return d


def _resolve(base: Path, p: str) -> str:
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q))


def _input(raw: Mapping[str, Any], name: str, base: Path, required: bool) -> InputSpec | None:
    v = raw.get(name)
    if v is None:
        if required:
            raise SpecError(f"spec.{name}: required; name its Parquet files, e.g. `{name}: logs/{name}`")
        return None
    if isinstance(v, str):
        v = {"path": v}
    if not isinstance(v, Mapping) or not isinstance(v.get("path"), str) or not v["path"]:
        raise SpecError(f"spec.{name}: give a path, or {{path: ..., columns: {{...}}, ttl: 30d}}")
    allowed = {"path", "columns", "ttl"}
    if set(v) - allowed:
        raise SpecError(f"spec.{name}: unknown keys {sorted(set(v) - allowed)}; allowed: {sorted(allowed)}")
    cols = v.get("columns") or {}
    if not isinstance(cols, Mapping) or not all(
        isinstance(k, str) and isinstance(c, str) and c for k, c in cols.items()
    ):
        raise SpecError(f"spec.{name}.columns: map standard names to the file's, e.g. {{ts: time}}")
    unknown = sorted(set(cols) - set(INPUT_KEYS[name]) - {"request_id", "user_id", "item_id"})
    if unknown:
        raise SpecError(
            f"spec.{name}.columns: {unknown} are not standard columns; map only "
            f"{sorted(set(INPUT_KEYS[name]) | {'request_id', 'user_id', 'item_id'})}"
        )
    ttl = None
    if v.get("ttl") is not None:
        if name not in ("user_features", "item_features"):
            raise SpecError(f"spec.{name}.ttl: only feature snapshots have a ttl")
        try:
            ttl = parse_duration_s(v["ttl"])
        except ValueError as e:
            raise SpecError(f"spec.{name}.ttl: {e}") from None
    return InputSpec(name=name, path=_resolve(base, v["path"]), columns=dict(cols), ttl_s=ttl)


def _day(v: Any, key: str) -> dt.date:
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError:
        raise SpecError(f"spec.days.{key}: {v!r} is not a date; write YYYY-MM-DD") from None


def spec_from_dict(raw: Mapping[str, Any], base: Path) -> BuildSpec:
    """Validate a spec mapping; relative paths are relative to ``base``."""
    if not isinstance(raw, Mapping):
        raise SpecError("a build spec must be a YAML mapping (schema, output, impressions, ...)")
    allowed = {"schema", "output", "days", *INPUT_KEYS}
    if set(raw) - allowed:
        raise SpecError(f"unknown spec keys {sorted(set(raw) - allowed)}; allowed: {sorted(allowed)}")
    if "schema" not in raw:
        raise SpecError("spec.schema: required; name a schema file or give it inline")
    try:
        s = raw["schema"]
        schema = Schema.from_yaml(_resolve(base, s)) if isinstance(s, str) else Schema.from_dict(s)
    except SchemaError as e:
        raise SpecError(f"spec.schema: {e}") from None
    if not schema.labels:
        raise SpecError(
            "spec.schema: declare `labels:` with an event and a window for each, e.g. "
            "{name: click, event: click, window: 30m}"
        )
    if not isinstance(raw.get("output"), str) or not raw["output"]:
        raise SpecError("spec.output: required; name the dataset directory")
    days = raw.get("days") or {}
    if not isinstance(days, Mapping) or set(days) - {"from", "to"}:
        raise SpecError("spec.days: write {from: YYYY-MM-DD, to: YYYY-MM-DD} (either may be left out)")
    first = _day(days["from"], "from") if days.get("from") else None
    last = _day(days["to"], "to") if days.get("to") else None
    if first and last and last < first:
        raise SpecError(f"spec.days: to ({last}) is before from ({first})")
    return BuildSpec(
        schema=schema, output=Path(_resolve(base, raw["output"])),
        impressions=_input(raw, "impressions", base, True),  # type: ignore[arg-type]
        events=_input(raw, "events", base, True),  # type: ignore[arg-type]
        user_features=_input(raw, "user_features", base, False),
        item_features=_input(raw, "item_features", base, False),
        first_day=first, last_day=last,
    )


def load_spec(source: str | Path | Mapping[str, Any]) -> BuildSpec:
    """Read a spec from a YAML file (paths relative to it) or a mapping (absolute paths)."""
    if isinstance(source, Mapping):
        return spec_from_dict(source, Path.cwd())
    path = Path(source)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SpecError(f"cannot read build spec {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"build spec {path} is not valid YAML: {e}") from None
    return spec_from_dict(raw or {}, path.resolve().parent)
