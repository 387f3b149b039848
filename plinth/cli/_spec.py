"""Job spec files: load the YAML, apply command-line overrides, resolve the code source.

Pure apart from reading the spec file and checking that local paths exist;
uploading is the caller's business (see :class:`PreparedSpec`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plinth.cli._parse import InputError, load_yaml

# scp-like git addresses ("git@host:org/repo.git") are remote, not local paths.
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


@dataclass
class PreparedSpec:
    """A spec ready to submit once ``upload_dir`` (when set) is uploaded.

    When ``upload_dir`` is not None, ``spec["code"]`` must become
    ``{"file": <sha256 of the uploaded archive>}``.
    """

    spec: dict[str, Any]
    upload_dir: Path | None


def load_spec(path: Path) -> dict[str, Any]:
    """Read a YAML (or JSON) job spec; the top level must be a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"job spec {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"job spec {str(path)!r} is a directory; give the YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read job spec {str(path)!r}: {exc}") from None
    data = load_yaml(text, f"job spec {str(path)!r}")
    if not isinstance(data, dict):
        raise InputError(
            f"job spec {str(path)!r} must be a mapping with at least 'name' and 'roles' "
            f"(got {type(data).__name__})"
        )
    return data


def template_ref(text: str) -> dict[str, Any]:
    """``NAME`` or ``NAME@VERSION`` (from --template) as spec keys ``template``/``version``."""
    name, sep, version = text.partition("@")
    if not name or (sep and not version.isdigit()) or (sep and int(version) < 1):
        raise InputError(f"--template: {text!r} is not NAME or NAME@VERSION (e.g. sparse-ctr@2)")
    return {"template": name, **({"version": int(version)} if sep else {})}


def prepare_spec(
    spec: dict[str, Any],
    spec_dir: Path,
    *,
    code_dir: Path | None = None,
    git: str | None = None,
    ref: str | None = None,
    params: dict[str, Any] | None = None,
    name: str | None = None,
    cwd: Path | None = None,
) -> PreparedSpec:
    """Apply overrides to a loaded ``spec`` and work out where its code comes from.

    Paths in the spec (``code: {upload: DIR}``, a local ``git`` path) are
    relative to ``spec_dir``; paths on the command line (``--code``,
    ``--git``) to ``cwd``. ``--code`` or ``--git`` replaces the spec's code.
    ``params`` are merged over the spec's ``params``. The input is not changed.
    """
    cwd = cwd or Path.cwd()
    spec = copy.deepcopy(spec)
    if code_dir is not None and git is not None:
        raise InputError("give either --code DIR or --git URL, not both")
    if ref is not None and git is None:
        raise InputError("--ref needs --git URL (the repository the ref is in)")
    if name is not None:
        spec["name"] = name
    if params:
        base = spec.get("params") or {}
        if not isinstance(base, dict):
            raise InputError("the spec's 'params' must be a mapping of name: value")
        spec["params"] = {**base, **params}

    upload_dir: Path | None = None
    if code_dir is not None:
        upload_dir = _existing_dir(_under(cwd, code_dir), "--code")
        spec["code"] = None
    elif git is not None:
        spec["code"] = {"git": _git_location(git, cwd), "ref": ref or "HEAD"}
    else:
        code = spec.get("code")
        if code is None:
            pass
        elif not isinstance(code, dict):
            raise InputError(_code_help(f"'code' must be a mapping, not {code!r}"))
        elif set(code) == {"upload"}:
            upload_dir = _existing_dir(_under(spec_dir, Path(str(code["upload"]))), "code.upload")
            spec["code"] = None
        elif "git" in code and set(code) <= {"git", "ref"}:
            spec["code"] = {
                "git": _git_location(str(code["git"]), spec_dir),
                "ref": str(code.get("ref") or "HEAD"),
            }
        elif set(code) == {"file"}:
            pass
        else:
            raise InputError(_code_help(f"unknown 'code' form {code!r}"))
    return PreparedSpec(spec=spec, upload_dir=upload_dir)


def _code_help(problem: str) -> str:
    return (
        f"job spec: {problem}; use code: {{upload: DIR}} (relative to the spec file), "
        "code: {git: URL, ref: REF}, or code: {file: SHA256}"
    )


def _under(base: Path, path: Path) -> Path:
    return (base / path.expanduser()).resolve()


def _existing_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what}: directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise InputError(f"{what}: {str(path)!r} is not a directory")
    return path


def _git_location(location: str, base: Path) -> str:
    """An absolute path for a local repository (the server has another cwd); URLs unchanged."""
    if "://" in location or _SCP_LIKE.match(location):
        return location
    local = _under(base, Path(location))
    if not local.exists():
        raise InputError(
            f"--git: {location!r} is neither a URL nor an existing local repository "
            f"(looked for {str(local)!r})"
        )
    return str(local)
