"""What a template is, and how its parameters are resolved. Pure: no I/O, no database.

A template version is a :class:`TemplateDocument`::

    name: sparse-ctr
    description: PS shards + workers running Plinth's trainer
    parameters:                       # typed; see Parameter
      - {name: model, type: string, default: deepfm, allowed: [lr, deepfm]}
      - {name: ps, type: integer, default: 2, min: 1, max: 64}
      - {name: worker_cpu, type: number, default: 1, layer: platform}
    presets:
      platform:    {worker_cpu: 2}    # admins: resources, limits
      engineering: {batch_size: 4096} # shards, threads, batch sizes, optimizers
    spec:                             # a job spec whose string leaves may be Jinja
      roles:
        worker: {replicas: "{{ ps }}", resources: {cpu: "{{ worker_cpu }}"}, ...}

Layers, earliest first: the parameter's ``default``, the platform preset, the
engineering preset, the algorithm engineer's ``params`` at submit. A later layer may
set a parameter only where the template allows: ``layer`` names the last layer that
may set it (``platform``: only the platform preset; ``engineering``: also the
engineering preset; ``algorithm``, the default: also at submit).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

# One strictness for every request model: unknown keys are named in the refusal.
from plinth.services.specs import NAME_PATTERN, CodeFile, CodeGit, JobSpec, _Strict, json_depth
from plinth.services.template_render import TemplateRenderError, check_spec

__all__ = [
    "LAYERS",
    "SUBMISSION_TAGS",
    "JobSubmission",
    "ParamError",
    "Parameter",
    "Presets",
    "TemplateDocument",
    "TemplatedJob",
    "check_value",
    "resolve_params",
]

#: Layers in the order they apply; a parameter's ``layer`` is the last one that may set it.
LAYERS = ("platform", "engineering", "algorithm")
Layer = Literal["platform", "engineering", "algorithm"]
ParamType = Literal["string", "integer", "number", "boolean", "path", "object", "list"]
PARAM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_PARAMETERS = 128
MAX_STRING = 4096
MAX_DOCUMENT_BYTES = 256 * 1024
#: The spec keys a template may set; ``group`` is always the submitter's.
SPEC_KEYS = frozenset(JobSpec.model_fields) - {"group"}


class ParamError(ValueError):
    """A parameter value is refused; ``str(e)`` starts with ``params.<name>:``."""


Scalar = str | int | float | bool


class Parameter(_Strict):
    """One typed parameter. ``path``: an absolute path that must exist on the server at
    submit. ``min``/``max`` bound integers and numbers; ``allowed`` lists the only
    values accepted. A parameter without a default is required unless ``required`` is
    false (then it is null when nobody sets it)."""

    name: str = Field(pattern=PARAM_NAME_PATTERN)
    type: ParamType = "string"
    description: Annotated[str, Field(max_length=2000)] = ""
    default: Any = None
    required: bool | None = Field(
        default=None, description="default: true when there is no default value"
    )
    allowed: list[Scalar] | None = Field(default=None, min_length=1, max_length=256)
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)
    layer: Layer = Field(
        default="algorithm",
        description="the last layer that may set it: platform (only the platform preset), "
        "engineering (also the engineering preset), algorithm (also at submit)",
    )

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"parameter {self.name!r}: min {self.min:g} > max {self.max:g}")
        if (self.min is not None or self.max is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError(f"parameter {self.name!r}: min/max need type integer or number")
        if self.allowed is not None:
            if self.type in ("object", "list"):
                raise ValueError(f"parameter {self.name!r}: allowed needs a scalar type")
            for v in self.allowed:
                check_value(self, v)
        if self.default is not None:
            # A path default need not exist yet: it is checked at submit, where it is used.
            check_value(self, self.default)
        return self


class Presets(_Strict):
    """Values for parameters, by layer (see the module docstring)."""

    platform: dict[str, Any] = Field(default_factory=dict)
    engineering: dict[str, Any] = Field(default_factory=dict)


class TemplateDocument(_Strict):
    """One version of a template, as published (``POST /api/v1/templates``)."""

    name: str = Field(pattern=NAME_PATTERN)
    group: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="the owning group; null: a platform template (admins only)",
    )
    description: Annotated[str, Field(max_length=4000)] = ""
    parameters: list[Parameter] = Field(default_factory=list, max_length=MAX_PARAMETERS)
    presets: Presets = Presets()
    spec: dict[str, Any] = Field(description="a job spec whose string leaves may be Jinja")

    @field_validator("spec")
    @classmethod
    def _spec_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - SPEC_KEYS)
        if unknown:
            raise ValueError(
                f"unknown job spec key(s) {', '.join(map(repr, unknown))}; a template's spec "
                f"may set {', '.join(sorted(SPEC_KEYS))} (the group is the submitter's)"
            )
        if "roles" not in v:
            raise ValueError("a template's spec needs 'roles'")
        if json_depth(v) > 32:
            raise ValueError("nested more than 32 levels deep")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TemplateDocument:
        _check_plain_json(self.model_dump(), "the template", MAX_DOCUMENT_BYTES)
        names = [p.name for p in self.parameters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"parameter(s) declared twice: {', '.join(dupes)}")
        by_name = {p.name: p for p in self.parameters}
        for layer in ("platform", "engineering"):
            for key, value in getattr(self.presets, layer).items():
                p = by_name.get(key)
                if p is None:
                    raise ValueError(f"presets.{layer}.{key}: not a declared parameter")
                if LAYERS.index(p.layer) < LAYERS.index(layer):
                    raise ValueError(
                        f"presets.{layer}.{key}: the parameter's layer is {p.layer!r}; "
                        f"the {layer} preset may not set it"
                    )
                try:
                    check_value(p, value)
                except ParamError as e:
                    raise ValueError(f"presets.{layer}.{e}") from None
        try:
            check_spec(self.spec, by_name)
        except TemplateRenderError as e:
            raise ValueError(str(e)) from None
        return self

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)


def _check_plain_json(value: Any, what: str, max_bytes: int) -> None:
    """ValueError unless ``value`` is storable JSON (finite numbers, valid Unicode) of at
    most ``max_bytes``."""
    try:
        size = len(json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8"))
    except (ValueError, UnicodeEncodeError) as e:
        raise ValueError(
            f"{what} must be plain JSON (finite numbers, valid Unicode text): {e}"
        ) from None
    if size > max_bytes:
        raise ValueError(f"{what} is {size} bytes as JSON; at most {max_bytes} are allowed")


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            dict: "object", list: "list"}.get(type(v), type(v).__name__)  # fmt: skip


def check_value(p: Parameter, v: Any) -> Any:
    """``v`` if it has ``p``'s type and bounds (an integer is a fine number); else
    ParamError naming the parameter. Does not look at the file system."""

    def bad(what: str) -> ParamError:
        return ParamError(f"params.{p.name}: {what}, got {_type_name(v)} {v!r:.200}")

    t = p.type
    if t in ("string", "path"):
        if not isinstance(v, str):
            raise bad(f"must be a {t}")
        if len(v) > MAX_STRING or "\x00" in v:
            raise ParamError(f"params.{p.name}: at most {MAX_STRING} characters, no NUL")
    elif t == "integer":
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad("must be an integer")
    elif t == "number":
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise bad("must be a finite number")
    elif t == "boolean":
        if not isinstance(v, bool):
            raise bad("must be true or false")
    elif t == "object":
        if not isinstance(v, dict):
            raise bad("must be an object (a mapping)")
    elif t == "list" and not isinstance(v, list):
        raise bad("must be a list")
    if p.min is not None and v < p.min:
        raise bad(f"must be at least {p.min:g}")
    if p.max is not None and v > p.max:
        raise bad(f"must be at most {p.max:g}")
    if p.allowed is not None and v not in p.allowed:
        raise bad(f"must be one of {', '.join(map(str, p.allowed))}")
    return v


def resolve_params(doc: TemplateDocument, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value after the layers: default, platform preset, engineering
    preset, then ``given`` (the submit). Raises ParamError for an unknown parameter, one
    the template does not let the submitter set, a wrong type or bound, or a required
    parameter nobody set. Paths are not checked here (that needs the file system)."""
    by_name = {p.name: p for p in doc.parameters}
    for key in given:
        p = by_name.get(key)
        if p is None:
            takes = ", ".join(sorted(n for n, q in by_name.items() if q.layer == "algorithm"))
            raise ParamError(
                f"params.{key}: unknown parameter; template {doc.name!r} takes "
                f"{takes or 'no parameters'} at submit"
            )
        if p.layer != "algorithm":
            raise ParamError(
                f"params.{key}: set by the template's {p.layer} preset; it cannot be changed "
                "at submit"
            )
    values: dict[str, Any] = {p.name: p.default for p in doc.parameters}
    values.update(doc.presets.platform)
    values.update(doc.presets.engineering)
    values.update(given)
    try:
        _check_plain_json(values, "params", MAX_DOCUMENT_BYTES)
    except ValueError as e:
        raise ParamError(str(e)) from None
    for p in doc.parameters:
        v = values[p.name]
        if v is None:
            if p.is_required:
                hint = f" ({p.description})" if p.description else ""
                raise ParamError(f"params.{p.name}: required{hint}; pass it with --param "
                                 f"{p.name}=VALUE")  # fmt: skip
            continue
        check_value(p, v)
    return values


class TemplatedJob(_Strict):
    """A job submitted by naming a template: the template's spec, expanded with
    ``params``; ``name``, ``group``, ``priority`` and ``code`` given here win."""

    template: str = Field(pattern=NAME_PATTERN, description="the template's name")
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="default: the latest version"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="values for the template's parameters"
    )
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    group: str | None = Field(default=None, pattern=NAME_PATTERN)
    priority: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    code: CodeFile | CodeGit | None = None


#: The tags of :data:`JobSubmission`'s two forms (they appear in validation errors' loc).
SUBMISSION_TAGS = ("JobSpec", "TemplatedJob")


def _submission_kind(body: Any) -> str:
    return "TemplatedJob" if isinstance(body, dict) and "template" in body else "JobSpec"


#: The body of ``POST /api/v1/jobs``: a full job spec, or a template to expand.
JobSubmission = Annotated[
    Annotated[JobSpec, Tag("JobSpec")] | Annotated[TemplatedJob, Tag("TemplatedJob")],
    Discriminator(_submission_kind),
]
