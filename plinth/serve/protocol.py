"""Request bodies -> feature records, and predictions -> response bodies (pure, no I/O).

Two ways in, one way through: both endpoints produce a list of raw feature dicts that
:meth:`plinth.train.package.ModelPackage.predict_records` hashes and scores exactly as
training did.

``/predict``: ``[{"c1": 12, "tags": [3, 4], "n1": 0.5}, ...]`` or ``{"instances": [...]}``.

``/v2/models/{name}/infer`` (KServe's Open Inference Protocol v2): one input per feature
column, named after it, ``shape: [B]``:

- single-valued categorical: ``INT64``/``INT32`` (ids) or ``BYTES`` (strings);
- multi-valued categorical: ``BYTES``, each element the row's JSON array of ids
  (``"[3, 4]"``; a plain nested list is accepted too) - variable-length rows, as Triton
  passes ragged data;
- numeric: ``FP32``/``FP64`` (or an integer type);
- ``null`` anywhere is a missing value (an empty slot, or the numeric field's ``fill``).

The output is ``probability``, ``FP32``, ``shape: [B]``.

Anything malformed raises :class:`BadRequest` with a message naming the field and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from plinth.data.schema import Schema

__all__ = ["BadRequest", "infer_response", "records_from_infer", "records_from_predict"]

_INT_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_FLOAT_TYPES = {"FP16", "FP32", "FP64"}


class BadRequest(ValueError):
    """The request cannot be scored; the message says what to fix (answered as 4xx)."""


def _is_id(v: Any) -> bool:
    return type(v) is int or type(v) is str  # bool is not an id


def _ok_single(v: Any) -> bool:
    return v is None or type(v) is int or type(v) is str


def _ok_multi(v: Any) -> bool:
    return v is None or (type(v) is list and all(map(_is_id, v)))


def _ok_numeric(v: Any) -> bool:
    return v is None or ((type(v) is float or type(v) is int)
                         and math.isfinite(v))


_CHECKS = {"single": (_ok_single, "must be one integer or string id"),
           "multi": (_ok_multi, "must be a list of integer or string ids"),
           "numeric": (_ok_numeric, "must be a finite number")}


def _field_kinds(schema: Schema) -> dict[str, str]:
    kinds = {f.name: ("multi" if f.multi else "single") for f in schema.categorical}
    kinds.update({f.name: "numeric" for f in schema.numeric})
    return kinds


_CHECKERS: dict[int, tuple[Schema, dict[str, Any]]] = {}  # id(schema) -> (schema, checks)


def _checkers(schema: Schema) -> dict[str, Any]:
    """Column -> its value check (the label: anything, it is ignored); cached by identity
    (a served schema is one object for the life of its version)."""
    hit = _CHECKERS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    checks: dict[str, Any] = {name: _CHECKS[kind][0] for name, kind in
                              _field_kinds(schema).items()}
    checks[schema.label] = lambda v: True
    if len(_CHECKERS) >= 8:
        _CHECKERS.clear()
    _CHECKERS[id(schema)] = (schema, checks)
    return checks


def _refuse(schema: Schema, rec: dict, where: str) -> BadRequest:
    """The reason one record failed the fast check."""
    kinds = _field_kinds(schema)
    unknown = sorted(set(rec) - set(kinds) - {schema.label})
    if unknown:
        return BadRequest(f"{where} has unknown features {unknown}; this model reads "
                          f"{sorted(kinds)}")
    for name, v in rec.items():
        if name in kinds and not _CHECKS[kinds[name]][0](v):
            return BadRequest(f"{where}.{name} {_CHECKS[kinds[name]][1]} or null, got {v!r}")
    return BadRequest(f"{where} is invalid")  # not reached: the fast check found something


def validate_records(schema: Schema, records: Any, where: str = "instances") -> list[dict]:
    """``records`` checked against ``schema``: a non-empty list of dicts whose keys are the
    schema's columns (the label may be present and is ignored) with values of their kind.
    Runs on every request, so the common case is one dict lookup and one check a value."""
    if not isinstance(records, list) or not records:
        raise BadRequest(f"{where} must be a non-empty list of feature objects")
    checks = _checkers(schema)
    for i, rec in enumerate(records):
        if type(rec) is not dict:
            raise BadRequest(f"{where}[{i}] must be an object of feature values, got "
                             f"{type(rec).__name__}")
        for name, v in rec.items():
            check = checks.get(name)
            if check is None or not check(v):
                raise _refuse(schema, rec, f"{where}[{i}]")
    return records


def records_from_predict(schema: Schema, body: Any) -> list[dict]:
    """The records of a ``/predict`` body (a list, or ``{"instances": [...]}``)."""
    if isinstance(body, dict):
        if set(body) != {"instances"}:
            raise BadRequest('the body must be a list of feature objects or '
                             '{"instances": [...]}')
        body = body["instances"]
    return validate_records(schema, body)


def _column(schema: Schema, inp: Any, i: int) -> tuple[str, list[Any]]:
    if not isinstance(inp, dict):
        raise BadRequest(f"inputs[{i}] must be an object with name, shape, datatype, data")
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in inp]
    if missing:
        raise BadRequest(f"inputs[{i}] lacks {missing}")
    name, shape, dtype, data = inp["name"], inp["shape"], inp["datatype"], inp["data"]
    kinds = _field_kinds(schema)
    if name not in kinds:
        raise BadRequest(f"inputs[{i}] names unknown feature {name!r}; this model reads "
                         f"{sorted(kinds)}")
    if (not isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], int)
            or isinstance(shape[0], bool)):
        raise BadRequest(f"input {name!r}: shape must be [batch size], got {shape!r}")
    if not isinstance(data, list) or len(data) != shape[0]:
        raise BadRequest(f"input {name!r}: data must be a list of {shape[0]} values "
                         "(its shape)")
    kind = kinds[name]
    allowed = {"numeric": _INT_TYPES | _FLOAT_TYPES, "single": _INT_TYPES | {"BYTES"},
               "multi": {"BYTES"}}[kind]
    if dtype not in allowed:
        raise BadRequest(f"input {name!r} is {kind}: datatype must be one of "
                         f"{sorted(allowed)}, got {dtype!r}")
    if kind == "multi":
        data = [_json_list(name, v) for v in data]
    elif dtype in _INT_TYPES and kind == "single":
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in data):
            raise BadRequest(f"input {name!r} is {dtype}: its data must be integers")
    elif dtype == "BYTES" and not all(v is None or isinstance(v, str) for v in data):
        raise BadRequest(f"input {name!r} is BYTES: its data must be strings")
    return name, data


def _json_list(name: str, v: Any) -> Any:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise BadRequest(f"input {name!r}: each element must be a JSON array of ids, "
                             f"got {v[:40]!r}") from None
    return v


def records_from_infer(schema: Schema, body: Any) -> tuple[list[dict], str | None]:
    """The records of a v2 infer body and its ``id`` (echoed in the response)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) \
            or not body["inputs"]:
        raise BadRequest('the body must be {"inputs": [{"name", "shape", "datatype", '
                         '"data"}, ...]} with one input per feature')
    req_id = body.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise BadRequest("id must be a string")
    cols = [_column(schema, inp, i) for i, inp in enumerate(body["inputs"])]
    names = [n for n, _ in cols]
    if len(set(names)) != len(names):
        raise BadRequest(f"inputs name a feature more than once: {names}")
    sizes = {len(d) for _, d in cols}
    if len(sizes) != 1:
        raise BadRequest(f"inputs have different batch sizes {sorted(sizes)}; give every "
                         "input the same shape [B]")
    n = sizes.pop()
    records = [{name: data[r] for name, data in cols} for r in range(n)]
    return validate_records(schema, records, where="rows"), req_id


def infer_response(model: str, version: str, probabilities: Sequence[float],
                   req_id: str | None, parameters: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model_name": model, "model_version": version,
        "outputs": [{"name": "probability", "datatype": "FP32",
                     "shape": [len(probabilities)], "data": list(probabilities)}],
        "parameters": dict(parameters),
    }
    if req_id is not None:
        out["id"] = req_id
    return out
