"""Console forms -> the REST API's request bodies (the same models validate them).

Each function takes the submitted form (field -> string) and returns the dict the
matching API endpoint accepts; blank fields are left out so the API's defaults
apply. Bad input raises ValueError (InputError) with a message that says what to fix.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from plinth.cli._parse import InputError, parse_quantities

__all__ = ["expansion_body", "group_body", "job_body", "notebook_body", "reservation_body",
           "user_body"]  # fmt: skip


def _blank(v: str | None) -> bool:
    return v is None or not v.strip()


def _resources(form: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("cpu", "memory", "gpu"):
        v = form.get(key, "").strip()
        if v:
            out[key] = v
    return parse_quantities(",".join(f"{k}={v}" for k, v in out.items()), "resources") if out \
        else {}  # fmt: skip


def job_body(form: dict[str, str]) -> dict[str, Any]:
    """A job from the submit form: either the spec as YAML/JSON (``spec``), or one role
    from the simple fields (name, command, replicas, cpu, memory, gpu, ...)."""
    if not _blank(form.get("spec")):
        try:
            body = yaml.safe_load(form["spec"])
        except yaml.YAMLError as e:
            raise InputError(f"spec: not valid YAML or JSON: {e}") from None
        if not isinstance(body, dict):
            raise InputError("spec: must be a mapping (name, roles, ...), as in docs/api.md")
        return body
    if _blank(form.get("command")):
        raise InputError("command: give the command to run (e.g. python train.py), or a spec")
    try:
        command = shlex.split(form["command"])
    except ValueError as e:
        raise InputError(f"command: {e} (quote arguments as in a shell)") from None
    role: dict[str, Any] = {"command": command, "resources": _resources(form)}
    if not _blank(form.get("replicas")):
        role["replicas"] = form["replicas"].strip()
    body: dict[str, Any] = {
        "name": form.get("name", "").strip() or "job",
        "roles": {form.get("role", "").strip() or "main": role},
    }
    for key in ("group", "max_runtime", "priority", "retries"):
        if not _blank(form.get(key)):
            body[key] = form[key].strip()
    if not _blank(form.get("params")):
        try:
            params = yaml.safe_load(form["params"])
        except yaml.YAMLError as e:
            raise InputError(f"params: not valid YAML or JSON: {e}") from None
        if not isinstance(params, dict):
            raise InputError("params: must be a mapping like {lr: 0.01}")
        body["params"] = params
    return body


def notebook_body(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key in ("name", "group", "idle_timeout", "max_lifetime", "at", "duration"):
        if not _blank(form.get(key)):
            body[key] = form[key].strip()
    res = _resources(form)
    if res:
        body["resources"] = res
    return body


def _quantities(form: dict[str, str], key: str) -> dict[str, Any] | None:
    v = form.get(key, "")
    return None if _blank(v) else parse_quantities(v, key)


def group_body(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"name": form.get("name", "").strip()}
    for key in ("quota", "borrow_limit", "lend_limit"):
        q = _quantities(form, key)
        if q is not None:
            body[key] = q
    return body


def user_body(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(), "group": form.get("group", "").strip(),
        "admin": form.get("admin") == "on",
    }  # fmt: skip
    cap = _quantities(form, "cap")
    if cap is not None:
        body["cap"] = cap
    return body


def _window(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    owner = form.get("owner", "").strip()
    kind, _, name = owner.partition(":")
    if kind not in ("group", "user") or not name:
        raise InputError("owner: choose a group or a user")
    body[kind] = name
    for key in ("start", "end"):
        if not _blank(form.get(key)):
            body[key] = form[key].strip()
    return body


def expansion_body(form: dict[str, str]) -> dict[str, Any]:
    body = _window(form)
    body["add"] = _quantities(form, "add") or {}
    body["reason"] = form.get("reason", "").strip()
    return body


def reservation_body(form: dict[str, str]) -> dict[str, Any]:
    body = _window(form)
    body["resources"] = _quantities(form, "resources") or {}
    if not _blank(form.get("node")):
        body["node"] = form["node"].strip()
    if not _blank(form.get("reason")):
        body["reason"] = form["reason"].strip()
    return body
