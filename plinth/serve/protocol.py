"""Request bodies -> feature columns, and predictions -> response bodies (pure, no I/O).

Two ways in, one way through: both endpoints produce :class:`Columns` (each feature's raw
values, one a row) that :meth:`plinth.train.package.ModelPackage.predict_columns` hashes
and scores exactly as training did (``predict_records`` goes the same way).

``/predict``: ``[{"c1": 12, "tags": [3, 4], "n1": 0.5}, ...]`` or ``{"instances": [...]}``.
The body is decoded straight into typed rows by a decoder built from the schema
(msgspec: parsing and type checks in C, no dict per row); a body it refuses - malformed,
an unknown feature, a value of the wrong type, ``NaN`` - takes the general path
(``json.loads`` and :func:`validate_records`), which accepts or refuses exactly as before
and says what is wrong. So the fast decoder changes the cost, never the outcome.

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
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec

from plinth.data.schema import Schema
from plinth.train.package import record_columns

__all__ = ["BadRequest", "Columns", "columns_from_infer", "columns_from_predict",
           "infer_response", "parse_infer_body", "parse_json", "predict_response",
           "records_from_predict"]

_INT_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_FLOAT_TYPES = {"FP16", "FP32", "FP64"}


class BadRequest(ValueError):
    """The request cannot be scored; the message says what to fix (answered as 4xx)."""


@dataclass(frozen=True)
class Columns:
    """One request's rows (or a batch's) by feature::

        data = {"c1": [12, 7, None], "tags": [[3, 4], None, []], "n1": [0.5, None, 2.0]}
        rows = 3

    Every feature of the schema is a key (``None`` where a row lacks it); each list holds
    ``rows`` raw values, as records hold them."""

    data: dict[str, list[Any]]
    rows: int

    @classmethod
    def from_records(cls, schema: Schema, records: Sequence[Mapping[str, Any]]) -> Columns:
        return cls(record_columns(schema, records), len(records))

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """The rows of ``parts`` in order (each part holds the same features)."""
        if len(parts) == 1:
            return parts[0]
        data = {name: list(chain.from_iterable(p.data[name] for p in parts))
                for name in parts[0].data}
        return cls(data, sum(p.rows for p in parts))


def parse_json(raw: bytes) -> Any:
    """The JSON document in ``raw`` (Python's parser: the reference for what is JSON)."""
    try:
        return json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"the body is not JSON ({e}); send a JSON document") from None


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


@dataclass(frozen=True)
class _FastPredict:
    decoder: msgspec.json.Decoder
    getters: tuple[tuple[str, Any], ...]  # (feature, attrgetter of its field in a row)


_FAST: dict[int, tuple[Schema, _FastPredict]] = {}  # id(schema) -> its decoder


def _fast_predict(schema: Schema) -> _FastPredict:
    """The schema's ``/predict`` decoder: each row a struct with one optional field a
    feature, typed as :func:`validate_records` checks it (ids: ``int | str``, not bool;
    multi: a list of ids; numeric: a number, ``NaN``/``Infinity`` refused), the label of
    any type, unknown keys refused. Cached by identity, like :func:`_checkers`."""
    hit = _FAST.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}  # struct fields are f0, f1, ...: any feature name works
    for name, kind in _field_kinds(schema).items():
        typ = {"single": int | str | None, "multi": list[int | str] | None,
               "numeric": int | float | None}[kind]
        attr = f"f{len(fields)}"
        fields.append((attr, typ, None))
        rename[attr] = name
    fields.append(("label", Any, None))
    rename["label"] = schema.label
    # gc=False: rows hold only JSON values (no cycles); untracked, 100 rows a request cost
    # the cyclic collector nothing (decoding took half the time in a measurement).
    row = msgspec.defstruct("Row", fields, rename=rename, forbid_unknown_fields=True,
                            gc=False)
    wrapped = msgspec.defstruct("Instances", [("instances", list[row])],
                                forbid_unknown_fields=True)
    getters = tuple((rename[attr], attrgetter(attr)) for attr, _, _ in fields[:-1])
    fast = _FastPredict(msgspec.json.Decoder(list[row] | wrapped), getters)
    if len(_FAST) >= 8:
        _FAST.clear()
    _FAST[id(schema)] = (schema, fast)
    return fast


def columns_from_predict(schema: Schema, raw: bytes) -> Columns:
    """The columns of a raw ``/predict`` body; :class:`BadRequest` says what is wrong."""
    fast = _fast_predict(schema)
    try:
        body = fast.decoder.decode(raw)
    except msgspec.DecodeError:  # (includes ValidationError) the general path says why
        body = None
    if body is not None:
        rows = body if isinstance(body, list) else body.instances
        if rows:
            return Columns({name: list(map(get, rows)) for name, get in fast.getters},
                           len(rows))
    return Columns.from_records(schema, records_from_predict(schema, parse_json(raw)))


def parse_infer_body(raw: bytes) -> Any:
    """A v2 infer body: msgspec's parser, or :func:`parse_json` for what it refuses
    (``NaN``, numbers out of range: then refused, with the reason, by the checks)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return parse_json(raw)


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


def columns_from_infer(schema: Schema, body: Any) -> tuple[Columns, str | None]:
    """The columns of a v2 infer body and its ``id`` (echoed in the response); every value
    is checked as :func:`validate_records` checks a record's."""
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
    if n == 0:
        raise BadRequest("rows must be a non-empty list of feature objects")
    kinds = _field_kinds(schema)
    for name, data in cols:
        check, what = _CHECKS[kinds[name]]
        if not all(map(check, data)):
            r = next(r for r, v in enumerate(data) if not check(v))
            raise BadRequest(f"rows[{r}].{name} {what} or null, got {data[r]!r}")
    given = dict(cols)
    return Columns({name: given.get(name) or [None] * n for name in kinds}, n), req_id


def predict_response(model: str, version: str, probabilities: Any, delta_seq: int) -> bytes:
    """A ``/predict`` answer, encoded: ``{"predictions", "model", "version", "delta_seq"}``
    (probabilities as float32 values; encoding in C, not through FastAPI's encoder)."""
    return msgspec.json.encode({"predictions": probabilities.tolist(), "model": model,
                                "version": version, "delta_seq": delta_seq})


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
