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

Categorical values are hashed with the field's salt (its name unless ``salt`` is given) to
64-bit feature ids (:mod:`plinth.sparse.hashing`); numeric values become one float32 column
of the dense matrix each, in schema order. Errors are :class:`SchemaError` and say what to
fix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CategoricalField",
    "NumericField",
    "NumericTransform",
    "Pooling",
    "Schema",
    "SchemaError",
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

    @property
    def hash_salt(self) -> str:
        return self.salt or self.name


@dataclass(frozen=True)
class NumericField:
    """A numeric column and its ``transform``. ``fill``: the raw value that nulls/NaN/inf
    stand for; ``None`` (the default) lets the learned transform choose (the column's mean,
    plus an "is missing" input where the training data has missing values)."""

    name: str
    fill: float | None = None
    transform: NumericTransform = NumericTransform.AUTO


@dataclass(frozen=True)
class Schema:
    """The features a model reads: categorical fields, numeric fields, label column."""

    label: str
    categorical: tuple[CategoricalField, ...] = field(default_factory=tuple)
    numeric: tuple[NumericField, ...] = field(default_factory=tuple)

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

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric]

    @property
    def columns(self) -> list[str]:
        """Every column the reader needs, label last."""
        return self.categorical_names + self.numeric_names + [self.label]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        if not isinstance(d, Mapping):
            raise SchemaError(f"a schema must be a mapping with label/categorical/numeric, got {d!r}")
        unknown = set(d) - {"label", "categorical", "numeric"}
        if unknown:
            raise SchemaError(
                f"unknown schema keys {sorted(unknown)}; allowed: label, categorical, numeric"
            )
        if "label" not in d:
            raise SchemaError("schema needs `label: <column>`")
        cats = tuple(_categorical(x, i) for i, x in enumerate(_as_list(d.get("categorical"), "categorical")))
        nums = tuple(_numeric(x, i) for i, x in enumerate(_as_list(d.get("numeric"), "numeric")))
        return cls(label=d["label"], categorical=cats, numeric=nums)

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
        return {
            "label": self.label,
            "categorical": [
                {"name": f.name, "multi": f.multi, "pooling": f.pooling.value, "salt": f.salt}
                for f in self.categorical
            ],
            "numeric": [
                {"name": f.name, "fill": f.fill, "transform": f.transform.value}
                for f in self.numeric
            ],
        }


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
    allowed = {"name", "multi", "pooling", "salt"}
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
    return CategoricalField(name=x["name"], multi=x.get("multi", False), pooling=pooling, salt=salt)


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
