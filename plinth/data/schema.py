"""Feature schema: which Parquet columns are categorical, numeric and the label.

YAML form (also accepted inline under a training config's ``schema:`` key)::

    label: click
    categorical:
      - c1                          # single id per row (int or string column)
      - {name: tags, multi: true, pooling: mean}   # list<int|string> column
      - {name: c2, salt: c1}        # share ids (and rows) with c1's vocabulary
    numeric:
      - n1                          # float column; transform learned from the data (auto)
      - {name: n2, transform: log1p, fill: 0.0}
      - {name: n3, transform: none} # the raw value, nulls -> fill (0)

Sample building (``plinth data build``, :mod:`plinth.data.build`) reads more of it::

    labels:                         # attribution of label events to impressions
      - {name: click, event: click, window: 30m}                         # by request id
      - {name: conversion, event: conversion, window: 24h, match: user_item}
    weight: w                       # optional sample-weight column (nulls -> 1.0)
    categorical:
      - {name: price_b, bucketize: price, boundaries: [1, 10, 100]}  # bucket index 0..3
      - {name: price_q, bucketize: price, quantiles: 8}   # boundaries learned at build
      - {name: user_x_cat, cross: [user_id, i_category]}   # one id per value pair

Derived fields (``bucketize``, ``cross``) are categorical columns the build materialises
(:mod:`plinth.data.transforms`); a dataset's ``schema.yaml`` holds learned boundaries, so
training and serving read the same ids. :meth:`Schema.fingerprint` is a stable hash of it.

Categorical values are hashed with the field's salt (its name unless ``salt`` is given) to
64-bit feature ids (:mod:`plinth.sparse.hashing`); numeric values become one float32 column
of the dense matrix each, in schema order. Errors are :class:`SchemaError` and say what to
fix.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CategoricalField",
    "LabelField",
    "LabelMatch",
    "NumericField",
    "NumericTransform",
    "Pooling",
    "Schema",
    "SchemaError",
    "parse_duration_s",
]


class SchemaError(ValueError):
    """The feature schema is malformed; the message names the field and the fix."""


class Pooling(enum.StrEnum):
    """How a multi-valued field's rows combine into one vector."""

    SUM = "sum"
    MEAN = "mean"


class NumericTransform(enum.StrEnum):
    """How a numeric column becomes a model input (see :mod:`plinth.data.normalize`).

    ``auto`` (the default) learns from the training data whether to take ``log1p`` (for a
    non-negative heavy-tailed column), then standardises and clips; ``log1p`` always takes
    it, then standardises and clips; ``standardize`` never takes it; ``none`` feeds the raw
    value (nulls -> ``fill``) untouched.
    """

    AUTO = "auto"
    LOG1P = "log1p"  # sign(x) * log(1 + |x|): tames counts and heavy tails
    STANDARDIZE = "standardize"
    NONE = "none"


@dataclass(frozen=True)
class CategoricalField:
    """A categorical column; ``multi`` for list columns; ``salt`` names the id space."""

    name: str
    multi: bool = False
    pooling: Pooling = Pooling.SUM
    salt: str | None = None
    # Derived fields (materialised by the build; see plinth.data.transforms):
    bucketize: str | None = None  # numeric source column -> bucket index (int32)
    boundaries: tuple[float, ...] | None = None  # sorted; value v lands in bisect_right
    quantiles: int | None = None  # learn this many equal-mass buckets at build time
    cross: tuple[str, ...] | None = None  # source columns combined into one id (int64)

    @property
    def hash_salt(self) -> str:
        return self.salt or self.name

    @property
    def derived(self) -> bool:
        """True when the build computes this column from other columns."""
        return self.bucketize is not None or self.cross is not None

    @property
    def sources(self) -> tuple[str, ...]:
        """Columns this field is computed from (itself for a plain column)."""
        if self.bucketize is not None:
            return (self.bucketize,)
        return self.cross if self.cross is not None else (self.name,)


@dataclass(frozen=True)
class NumericField:
    """A numeric column and its ``transform``. ``fill``: the raw value that nulls/NaN/inf
    stand for; ``None`` (the default) lets the learned transform choose (the column's mean,
    plus an "is missing" input where the training data has missing values)."""

    name: str
    fill: float | None = None
    transform: NumericTransform = NumericTransform.AUTO


class LabelMatch(enum.StrEnum):
    """How a label event finds its impression."""

    REQUEST = "request"  # same request_id (and item_id when the event log has one)
    USER_ITEM = "user_item"  # same (user_id, item_id): the latest impression before it


@dataclass(frozen=True)
class LabelField:
    """A 0/1 label: 1 when an ``event`` is attributed to the impression within ``window_s``.

    An event is attributed to the latest impression with the same match keys at or before
    it (last touch), and counts when it came at most ``window_s`` seconds after it.
    """

    name: str
    event: str
    window_s: float
    match: LabelMatch = LabelMatch.REQUEST


@dataclass(frozen=True)
class Schema:
    """The features a model reads: categorical fields, numeric fields, label column."""

    label: str
    categorical: tuple[CategoricalField, ...] = field(default_factory=tuple)
    numeric: tuple[NumericField, ...] = field(default_factory=tuple)
    labels: tuple[LabelField, ...] = field(default_factory=tuple)  # how builds attribute them
    weight: str | None = None  # sample-weight column written by builds

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise SchemaError("schema.label must name the label column, e.g. `label: click`")
        names = [f.name for f in self.categorical] + [f.name for f in self.numeric]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SchemaError(f"schema lists columns {dup} more than once; list each column once")
        if self.label in names:
            raise SchemaError(f"the label column {self.label!r} is also listed as a feature")
        if not self.categorical and not self.numeric:
            raise SchemaError("schema has no features; list `categorical` and/or `numeric` columns")
        _check_build_fields(self)

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric]

    @property
    def columns(self) -> list[str]:
        """Every column the reader needs: features, the label, the weight when set."""
        weight = [self.weight] if self.weight is not None else []
        return self.categorical_names + self.numeric_names + [self.label] + weight

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        if not isinstance(d, Mapping):
            raise SchemaError(f"a schema must be a mapping with label/categorical/numeric, got {d!r}")
        unknown = set(d) - _SCHEMA_KEYS
        if unknown:
            raise SchemaError(
                f"unknown schema keys {sorted(unknown)}; allowed: {', '.join(_SCHEMA_KEYS_ORDER)}"
            )
        if "label" not in d:
            raise SchemaError("schema needs `label: <column>`")
        cats = tuple(_categorical(x, i) for i, x in enumerate(_as_list(d.get("categorical"), "categorical")))
        nums = tuple(_numeric(x, i) for i, x in enumerate(_as_list(d.get("numeric"), "numeric")))
        labels = tuple(_label(x, i) for i, x in enumerate(_as_list(d.get("labels"), "labels")))
        weight = d.get("weight")
        if weight is not None and (not isinstance(weight, str) or not weight):
            raise SchemaError("schema.weight must name a numeric column, e.g. `weight: w`")
        return cls(label=d["label"], categorical=cats, numeric=nums, labels=labels, weight=weight)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Schema:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise SchemaError(f"cannot read schema file {p}: {e.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SchemaError(f"schema file {p} is not valid YAML: {e}") from None
        return cls.from_dict(data or {})

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "label": self.label,
            "categorical": [
                {"name": f.name, "multi": f.multi, "pooling": f.pooling.value, "salt": f.salt}
                | _derivation_dict(f)
                for f in self.categorical
            ],
            "numeric": [
                {"name": f.name, "fill": f.fill, "transform": f.transform.value}
                for f in self.numeric
            ],
        }
        # Build-only keys appear only when set, so older schemas keep their exact form.
        if self.labels:
            d["labels"] = [
                {"name": x.name, "event": x.event, "window": x.window_s, "match": x.match.value}
                for x in self.labels
            ]
        if self.weight is not None:
            d["weight"] = self.weight
        return d

    # --- sample building: labels, derived fields, fingerprint ---------------------------

    @property
    def label_names(self) -> list[str]:
        """Label columns a build writes (just ``label`` when no ``labels`` are declared)."""
        return [x.name for x in self.labels] or [self.label]

    @property
    def derived(self) -> tuple[CategoricalField, ...]:
        """Categorical fields computed by the build (buckets, crosses), in schema order."""
        return tuple(f for f in self.categorical if f.derived)

    @property
    def unresolved(self) -> tuple[CategoricalField, ...]:
        """Quantile-bucket fields whose boundaries are still to be learned from data."""
        return tuple(f for f in self.categorical if f.quantiles and f.boundaries is None)

    def with_boundaries(self, learned: Mapping[str, Sequence[float]]) -> Schema:
        """This schema with learned bucket ``boundaries`` filled in, by field name."""
        cats = tuple(
            replace(f, boundaries=tuple(float(b) for b in learned[f.name]))
            if f.name in learned else f
            for f in self.categorical
        )
        return replace(self, categorical=cats)

    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the canonical JSON form: equal schemas, equal fingerprints."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def to_yaml(self, path: str | Path) -> None:
        """Write the schema as YAML that :meth:`from_yaml` reads back equal."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _as_list(x: Any, what: str) -> list[Any]:
    if x is None:
        return []
    if not isinstance(x, list):
        raise SchemaError(f"schema.{what} must be a list of column names or mappings")
    return x


def _categorical(x: Any, i: int) -> CategoricalField:
    if isinstance(x, str):
        return CategoricalField(name=x)
    if not isinstance(x, Mapping) or not isinstance(x.get("name"), str) or not x["name"]:
        raise SchemaError(f"schema.categorical[{i}] must be a column name or {{name: ..., ...}}")
    allowed = {"name", "multi", "pooling", "salt"} | _DERIVATION_KEYS
    if set(x) - allowed:
        raise SchemaError(
            f"schema.categorical[{i}] ({x['name']}): unknown keys {sorted(set(x) - allowed)}; "
            f"allowed: {sorted(allowed)}"
        )
    try:
        pooling = Pooling(x.get("pooling", "sum"))
    except ValueError:
        raise SchemaError(
            f"schema.categorical[{i}] ({x['name']}): pooling must be one of "
            f"{[p.value for p in Pooling]}, got {x.get('pooling')!r}"
        ) from None
    if not isinstance(x.get("multi", False), bool):
        raise SchemaError(f"schema.categorical[{i}] ({x['name']}): multi must be true or false")
    salt = x.get("salt")
    if salt is not None and not isinstance(salt, str):
        raise SchemaError(f"schema.categorical[{i}] ({x['name']}): salt must be a string")
    return CategoricalField(
        name=x["name"], multi=x.get("multi", False), pooling=pooling, salt=salt,
        **_derivation(x, f"schema.categorical[{i}] ({x['name']})"),
    )


def _numeric(x: Any, i: int) -> NumericField:
    if isinstance(x, str):
        return NumericField(name=x)
    if not isinstance(x, Mapping) or not isinstance(x.get("name"), str) or not x["name"]:
        raise SchemaError(f"schema.numeric[{i}] must be a column name or {{name: ..., ...}}")
    allowed = {"name", "fill", "transform"}
    if set(x) - allowed:
        raise SchemaError(
            f"schema.numeric[{i}] ({x['name']}): unknown keys {sorted(set(x) - allowed)}; "
            f"allowed: {sorted(allowed)}"
        )
    try:
        transform = NumericTransform(x.get("transform", "auto"))
    except ValueError:
        raise SchemaError(
            f"schema.numeric[{i}] ({x['name']}): transform must be one of "
            f"{[t.value for t in NumericTransform]}, got {x.get('transform')!r}"
        ) from None
    fill = x.get("fill")
    if fill is not None and (isinstance(fill, bool) or not isinstance(fill, int | float)):
        raise SchemaError(f"schema.numeric[{i}] ({x['name']}): fill must be a number")
    return NumericField(name=x["name"], fill=None if fill is None else float(fill),
                        transform=transform)


# --- build-side extensions: labels, weights, bucketized and crossed fields ---------------

_SCHEMA_KEYS_ORDER = ("label", "categorical", "numeric", "labels", "weight")
_SCHEMA_KEYS = set(_SCHEMA_KEYS_ORDER)
_DERIVATION_KEYS = {"bucketize", "boundaries", "quantiles", "cross"}
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")


def parse_duration_s(value: Any) -> float:
    """Seconds in a positive duration: a number of seconds or ``'90s'``, ``'30m'``, ``'24h'``,
    ``'7d'``, ``'1w'``. Raises ValueError saying which forms are accepted."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(  # noqa: TRY004 — one error type for every bad duration
            f"must be a duration like '30m', '24h' or '7d', got {value!r}"
        )
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(f"must be a duration like '30m', '24h' or '7d', got {value!r}")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def _label(x: Any, i: int) -> LabelField:
    if not isinstance(x, Mapping) or not isinstance(x.get("name"), str) or not x["name"]:
        raise SchemaError(
            f"schema.labels[{i}] must be {{name: click, event: click, window: 30m}}"
        )
    where = f"schema.labels[{i}] ({x['name']})"
    allowed = {"name", "event", "window", "match"}
    if set(x) - allowed:
        raise SchemaError(
            f"{where}: unknown keys {sorted(set(x) - allowed)}; allowed: {sorted(allowed)}"
        )
    event = x.get("event", x["name"])
    if not isinstance(event, str) or not event:
        raise SchemaError(f"{where}: event must name an event type, e.g. `event: click`")
    if "window" not in x:
        raise SchemaError(f"{where}: window is required, e.g. `window: 30m`")
    try:
        window = parse_duration_s(x["window"])
    except ValueError as e:
        raise SchemaError(f"{where}: window {e}") from None
    try:
        match = LabelMatch(x.get("match", "request"))
    except ValueError:
        raise SchemaError(
            f"{where}: match must be one of {[m.value for m in LabelMatch]}, "
            f"got {x.get('match')!r}"
        ) from None
    return LabelField(name=x["name"], event=event, window_s=window, match=match)


def _derivation(x: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The derivation keys of a categorical entry, checked; {} for a plain column."""
    out: dict[str, Any] = {}
    if "bucketize" in x and "cross" in x:
        raise SchemaError(f"{where}: give either bucketize or cross, not both")
    if "bucketize" in x:
        src = x["bucketize"]
        if not isinstance(src, str) or not src:
            raise SchemaError(f"{where}: bucketize must name a numeric column")
        has_b, has_q = x.get("boundaries") is not None, x.get("quantiles") is not None
        if not has_b and not has_q:
            raise SchemaError(
                f"{where}: bucketize needs `boundaries: [..]` or `quantiles: N` (learned)"
            )
        out["bucketize"] = src
        if has_b:
            b = x["boundaries"]
            if (not isinstance(b, list) or not b
                    or not all(isinstance(v, int | float) and not isinstance(v, bool)
                               and math.isfinite(v) for v in b)):
                raise SchemaError(f"{where}: boundaries must be a non-empty list of numbers")
            if any(b2 <= b1 for b1, b2 in itertools.pairwise(b)):
                raise SchemaError(f"{where}: boundaries must be strictly increasing, got {b}")
            out["boundaries"] = tuple(float(v) for v in b)
        if has_q:
            q = x["quantiles"]
            if isinstance(q, bool) or not isinstance(q, int) or not 2 <= q <= 65536:
                raise SchemaError(f"{where}: quantiles must be an integer from 2 to 65536")
            out["quantiles"] = q
    elif "cross" in x:
        c = x["cross"]
        if (not isinstance(c, list) or len(c) < 2
                or not all(isinstance(v, str) and v for v in c) or len(set(c)) != len(c)):
            raise SchemaError(f"{where}: cross must list two or more distinct column names")
        out["cross"] = tuple(c)
    else:
        extra = sorted(set(x) & {"boundaries", "quantiles"})
        if extra:
            raise SchemaError(f"{where}: {extra} only go with `bucketize: <column>`")
    if out and x.get("multi", False):
        raise SchemaError(f"{where}: a bucketized or crossed field cannot be multi: true")
    return out


def _derivation_dict(f: CategoricalField) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if f.bucketize is not None:
        d["bucketize"] = f.bucketize
        if f.boundaries is not None:
            d["boundaries"] = list(f.boundaries)
        if f.quantiles is not None:
            d["quantiles"] = f.quantiles
    if f.cross is not None:
        d["cross"] = list(f.cross)
    return d


def _check_build_fields(s: Schema) -> None:
    """Cross-field rules of labels, weight and derived fields; errors name the field."""
    names = [x.name for x in s.labels]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SchemaError(f"schema.labels names {dup} more than once; name each label once")
    features = set(s.categorical_names) | set(s.numeric_names)
    clash = sorted(features & set(names))
    if clash:
        raise SchemaError(f"schema.labels {clash} are also listed as features; rename one")
    if s.labels and s.label not in names:
        raise SchemaError(
            f"schema.label {s.label!r} must be one of the labels {names} (the one to train on)"
        )
    if s.weight is not None and (s.weight in features or s.weight in names):
        raise SchemaError(f"schema.weight {s.weight!r} is also a feature or label; rename it")
    multi = {f.name for f in s.categorical if f.multi}
    for f in s.derived:
        bad = sorted(set(f.sources) & ({f.name} | multi | set(names)))
        if bad:
            raise SchemaError(
                f"schema.categorical ({f.name}): cannot derive from {bad} "
                "(itself, a multi-valued field or a label)"
            )
