"""The training configuration (YAML) and its validation.

Minimal example (paths are relative to the config file)::

    data: {train: data/train, test: data/test}     # Parquet files, directories or globs
    schema: data/schema.yaml                       # or inline: label/categorical/numeric
    model: deepfm                                  # lr | fm | deepfm | wide_deep | dcn_v2 | dlrm
    embedding_dim: 16
    batch_size: 1024
    epochs: 1

Everything else has defaults; see :class:`TrainConfig`. Instead of ``schema`` the config
may name ``label``, ``categorical`` and ``numeric`` at the top level. Errors are
:class:`ConfigError`, one line per problem, each naming the key path and what to change,
e.g. ``embedding_dim: must be >= 1 (got 0)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plinth.data.schema import Schema, SchemaError
from plinth.train.distributed_config import DistributedConfig  # ps engineer (issue 11)

__all__ = [
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DenseOptimizerConfig",
    "ExportConfig",
    "GuardConfig",
    "NormalizeConfig",
    "TablesConfig",
    "TrainConfig",
    "load_config",
]


class ConfigError(ValueError):
    """The training config is invalid; ``str(e)`` lists every problem and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the samples are: Parquet files, directories or globs."""

    train: str | list[str]
    test: str | list[str] | None = None
    prefetch: int = Field(4, ge=1, le=64)
    shuffle_row_groups: bool = False


class SparseOptimizer(_Strict):
    """In-table optimizer (see plinth.sparse.config.OptimizerConfig)."""

    kind: Literal["sgd", "adagrad", "ftrl", "adam"] = "adagrad"
    lr: float = Field(0.01, gt=0)  # measured: docs/training.md, "Defaults and the sweep"
    eps: float | None = Field(None, gt=0)
    initial_accumulator: float = Field(0.0, ge=0)
    alpha: float | None = Field(None, gt=0)
    beta: float = Field(1.0, ge=0)
    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)


class AdmissionConfig(_Strict):
    min_count: int = Field(1, ge=1, le=65535)
    probability: float = Field(1.0, gt=0, le=1)
    sketch_width: int = Field(1 << 20, ge=16)
    sketch_depth: int = Field(4, ge=1, le=8)
    compete: bool = Field(False, description="with an LFU max_rows cap: newcomers must beat "
                          "the count of the rows the cap evicts (TinyLFU)")


class EvictionConfig(_Strict):
    ttl_steps: int | None = Field(None, ge=1)
    ttl_seconds: float | None = Field(None, gt=0)
    max_rows: int | None = Field(None, ge=1)
    policy: Literal["lru", "lfu"] = "lru"
    every_steps: int = Field(100, ge=1, description="how often TTL eviction runs")


class TablesConfig(_Strict):
    """How fields map to dynamic tables and how those learn and forget.

    ``sharing: shared`` puts every field in one table (ids are salted by field, so they do
    not collide) — one hash probe per batch and one memory budget; ``per_field`` gives
    each field its own table (and its own ``max_rows``).
    """

    sharing: Literal["shared", "per_field"] = "shared"
    optimizer: SparseOptimizer = SparseOptimizer()
    # None: first-order weights use ``optimizer`` and live in the embedding table as one
    # extra column (one hash probe, one sketch, one index for both). Set it (e.g. FTRL) to
    # give them their own dimension-1 tables. FTRL's beta is not scale-free and the loss is a
    # mean over the batch (per-id gradients ~1/batch_size): pick beta near the typical
    # sqrt(sum g^2), e.g. 0.001-0.01, with alpha ~0.05.
    linear_optimizer: SparseOptimizer | None = None
    init_std: float = Field(0.01, ge=0)
    admission: AdmissionConfig = AdmissionConfig()
    eviction: EvictionConfig = EvictionConfig()
    storage_dtype: Literal["float32", "float16"] = "float32"

    @model_validator(mode="after")
    def _compete_needs_an_lfu_cap(self) -> TablesConfig:
        ev = self.eviction
        if self.admission.compete and (ev.max_rows is None or ev.policy != "lfu"):
            raise ValueError("admission.compete needs eviction.max_rows and eviction.policy "
                             "'lfu'; set both or drop compete")
        return self


class DenseOptimizerConfig(_Strict):
    kind: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class CheckpointConfig(_Strict):
    """Periodic checkpoints under ``<output_dir>/checkpoints``; resume is automatic."""

    every_steps: int | None = Field(1000, ge=1)
    keep: int = Field(2, ge=1)
    resume: bool = True


class NormalizeConfig(_Strict):
    """How numeric transforms are learned (see plinth.data.normalize)."""

    stats_rows: int = Field(100_000, ge=1, description="training rows read to learn them")
    clip: float = Field(5.0, gt=0, description="standardised values are clipped to +-clip")


class GuardConfig(_Strict):
    """Stops a diverging run (plinth.train.stability): a non-finite loss at once, or a moving
    average of the loss above ``explode_factor`` times the base-rate loss (the loss of
    predicting the base rate, where a calibrated start begins) once ``min_steps`` steps
    have been seen."""

    enabled: bool = True
    explode_factor: float = Field(3.0, gt=1)
    min_steps: int = Field(20, ge=1, description="steps before the smoothed loss is judged")


class ExportConfig(_Strict):
    """Model package at the end (``<output_dir>/model``); deltas every N steps."""

    package: bool = True
    delta_every_steps: int | None = Field(None, ge=1)


class TrainConfig(_Strict):
    """Everything ``plinth train local`` needs. Relative paths are relative to ``base_dir``."""

    data: DataConfig
    schema_: Schema = Field(alias="schema")
    model: Literal["lr", "fm", "deepfm", "wide_deep", "dcn_v2", "dlrm"] = "deepfm"
    embedding_dim: int = Field(16, ge=1, le=1024)
    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    dropout: float = Field(0.0, ge=0, lt=1)
    cross_layers: int = Field(2, ge=0, le=16)
    bottom: list[int] = Field(default_factory=lambda: [64])
    tables: TablesConfig = TablesConfig()
    dense_optimizer: DenseOptimizerConfig = DenseOptimizerConfig()
    warmup_steps: int = Field(20, ge=0, description="learning rates ramp up linearly")
    normalize: NormalizeConfig = NormalizeConfig()
    guard: GuardConfig = GuardConfig()
    batch_size: int = Field(4096, ge=1, le=1 << 20)
    eval_batch_size: int | None = Field(None, ge=1)
    epochs: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1, description="torch.set_num_threads")
    output_dir: str = "runs/train"
    checkpoint: CheckpointConfig = CheckpointConfig()
    export: ExportConfig = ExportConfig()
    log_every_steps: int = Field(100, ge=1)
    progress: bool = True
    # Parameter-server training (python -m plinth.train.distributed); ignored in-process.
    distributed: DistributedConfig | None = None
    base_dir: str = "."

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True,
                              populate_by_name=True)

    @field_validator("hidden", "bottom")
    @classmethod
    def _positive_layers(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError(f"layer sizes must be >= 1, got {v}")
        return v

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema(cls, v: Any) -> Schema:
        if isinstance(v, Schema):
            return v
        try:
            if isinstance(v, str):
                return Schema.from_yaml(v)
            return Schema.from_dict(v)
        except SchemaError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _model_fits(self) -> TrainConfig:
        if self.model in ("dcn_v2", "dlrm", "fm", "deepfm", "wide_deep") and not (
            self.schema_.categorical
        ):
            raise ValueError(f"model {self.model!r} needs categorical features; use model: lr")
        return self

    @property
    def schema(self) -> Schema:  # type: ignore[override]
        return self.schema_

    def path(self, p: str) -> Path:
        """Resolve ``p`` against the config's directory."""
        return _resolve(Path(self.base_dir), p)

    def data_paths(self, split: Literal["train", "test"]) -> list[str]:
        v = self.data.train if split == "train" else self.data.test
        if v is None:
            return []
        items = [v] if isinstance(v, str) else v
        return [str(self.path(x)) for x in items]

    @property
    def output_path(self) -> Path:
        return self.path(self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="python", by_alias=True, exclude={"schema_"})
        d["schema"] = self.schema_.to_dict()
        return d


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def _format(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        loc = loc.replace("schema_", "schema")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required; add it"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err.get('input')!r})"
        elif "input" in err and err["type"] not in ("model_type", "dict_type"):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"{loc}: {msg}")
    return "invalid training config:\n  " + "\n  ".join(lines)


def load_config(source: str | Path | dict[str, Any], base_dir: str | Path | None = None) -> TrainConfig:
    """Read and validate a config from a YAML file or a dict; raise :class:`ConfigError`."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path} is not valid YAML: {e}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path} must be a YAML mapping of keys to values")
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
    else:
        raw = dict(source)
        base = Path(base_dir) if base_dir is not None else Path(".")
    raw = dict(raw)
    raw.setdefault("base_dir", str(base))
    # Top-level label/categorical/numeric are shorthand for an inline schema.
    if "schema" not in raw and any(k in raw for k in ("label", "categorical", "numeric")):
        raw["schema"] = {k: raw.pop(k) for k in ("label", "categorical", "numeric") if k in raw}
    elif "schema" in raw and any(k in raw for k in ("label", "categorical", "numeric")):
        raise ConfigError(
            "invalid training config:\n  schema: given together with top-level "
            "label/categorical/numeric; use one of the two"
        )
    if "schema" not in raw:
        raise ConfigError(
            "invalid training config:\n  schema: required; name a schema file "
            "(schema: path.yaml) or give label, categorical and numeric columns"
        )
    if isinstance(raw["schema"], str):  # a schema file, relative to the config's directory
        raw["schema"] = str(_resolve(Path(raw["base_dir"]), raw["schema"]))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None
