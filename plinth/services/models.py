"""The model registry: models, immutable versions with lineage, aliases, deltas.

PLINTH_HOME/models/<name>/
  v<version>/package/                  the registered package (copied; never changed)
  v<version>/deltas/delta-<seq>/       its deltas, in sequence order

A model belongs to the group of whoever registered it first; members see and change their
group's models, admins all. Registration copies the package (from an uploaded archive, or
from a job's working directory) into a staging directory beside its final place, loads it
with ``ModelPackage`` (a broken or foreign package is refused with the reason, and nothing
is written), then renames it into place in the same transaction that adds the row.

An alias points at one version and moves atomically (one row update); every move is
kept (``history``). Deltas of a version are numbered 1, 2, ...: a delta is accepted only
as the next number (``Conflict`` otherwise), so a server applying them in order never
skips or repeats one. A workload token may publish deltas for versions its own job
registered (or that its group owns), reading them from its own working directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from plinth.services.auth import Principal, require_unscoped
from plinth.services.errors import Conflict, Invalid, NotFound
from plinth.services.visibility import may_see
from plinth.services.workdirs import code_dir, file_path
from plinth.store.models import (
    Model,
    ModelAlias,
    ModelAliasMove,
    ModelDelta,
    ModelVersion,
    Workload,
    utcnow,
)

__all__ = [
    "ALIAS_RE",
    "NAME_RE",
    "Source",
    "add_delta",
    "alias_history",
    "get_model",
    "get_version",
    "list_deltas",
    "list_models",
    "list_versions",
    "move_alias",
    "register_version",
    "resolve",
]

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Source:
    """Where a package or delta comes from: an uploaded archive (``file``: sha256), or a
    directory (``path``, relative) in job ``job``'s working directory."""

    file: str | None = None
    job: str | None = None
    path: str | None = None


# ---------------------------------------------------------------------------- reading

def _model(session: Session, p: Principal, name: str) -> Model:
    m = session.scalar(select(Model).where(Model.name == name))
    if m is None or not (p.admin or m.group_id == p.group_id):
        raise NotFound(f"model {name!r} not found")
    return m


def get_model(session: Session, p: Principal, name: str) -> tuple[Model, list[ModelVersion],
                                                                   list[ModelAlias]]:
    m = _model(session, p, name)
    return m, list_versions(session, p, name), _aliases(session, m)


def _aliases(session: Session, m: Model) -> list[ModelAlias]:
    return list(session.scalars(select(ModelAlias).where(ModelAlias.model_id == m.id)
                                .order_by(ModelAlias.alias)))


def list_models(session: Session, p: Principal) -> list[Model]:
    q = select(Model).order_by(Model.name)
    if not p.admin:
        q = q.where(Model.group_id == p.group_id)
    return list(session.scalars(q))


def list_versions(session: Session, p: Principal, name: str) -> list[ModelVersion]:
    m = _model(session, p, name)
    return list(session.scalars(select(ModelVersion).where(ModelVersion.model_id == m.id)
                                .order_by(ModelVersion.version)))


def get_version(session: Session, p: Principal, name: str, ref: str | int) -> ModelVersion:
    """Version ``ref`` of ``name``: a number, or an alias."""
    m = _model(session, p, name)
    number = _version_number(session, m, ref)
    v = session.scalar(select(ModelVersion).where(ModelVersion.model_id == m.id,
                                                  ModelVersion.version == number))
    if v is None:
        raise NotFound(f"model {name!r} has no version {number}")
    return v


def resolve(session: Session, p: Principal, ref: str) -> ModelVersion:
    """``NAME@VERSION`` or ``NAME@ALIAS`` -> the version."""
    name, sep, which = ref.partition("@")
    if not sep or not which:
        raise Invalid(f"model: {ref!r} must be NAME@VERSION or NAME@ALIAS, e.g. ctr@production")
    return get_version(session, p, name, which)


def _version_number(session: Session, m: Model, ref: str | int) -> int:
    if isinstance(ref, int) or str(ref).isdigit():
        return int(ref)
    a = session.scalar(select(ModelAlias).where(ModelAlias.model_id == m.id,
                                                ModelAlias.alias == ref))
    if a is None:
        raise NotFound(f"model {m.name!r} has no alias {ref!r}")
    return a.version


def alias_history(session: Session, p: Principal, name: str,
                  alias: str | None = None) -> list[ModelAliasMove]:
    m = _model(session, p, name)
    q = select(ModelAliasMove).where(ModelAliasMove.model_id == m.id)
    if alias is not None:
        q = q.where(ModelAliasMove.alias == alias)
    return list(session.scalars(q.order_by(ModelAliasMove.id)))


def list_deltas(session: Session, p: Principal, name: str, ref: str | int,
                after: int = 0) -> list[ModelDelta]:
    v = get_version(session, p, name, ref)
    return list(session.scalars(select(ModelDelta).where(ModelDelta.version_id == v.id,
                                                         ModelDelta.seq > after)
                                .order_by(ModelDelta.seq)))


# ---------------------------------------------------------------------------- staging

def _job_dir(session: Session, p: Principal, home: Path, job: str, path: str | None,
             what: str) -> tuple[Workload, Path]:
    w = session.get(Workload, job)
    if w is None or not may_see(p, w):
        raise NotFound(f"job {job!r} not found")
    root = code_dir(home, w.id).resolve()
    rel = Path(path or "model")
    src = (root / rel).resolve()
    if rel.is_absolute() or not src.is_relative_to(root):
        raise Invalid(f"path: {path!r} must be a directory inside the job's working directory")
    if not src.is_dir():
        raise Invalid(f"path: job {job} has no {what} directory {rel} (looked in its working "
                      "directory); give --path DIR")
    return w, src


def _stage(session: Session, p: Principal, home: Path, src: Source, staging: Path,
           limits: Any, what: str) -> Workload | None:
    """Copy the source into ``staging`` (which must not exist); return the job, if any."""
    if (src.file is None) == (src.job is None):
        raise Invalid("give exactly one of file (an uploaded archive) or job")
    if src.file is not None:
        from plinth.artifacts.archive import UnsafeArchiveError, extract_archive

        archive = file_path(home, src.file) if re.fullmatch(r"[0-9a-f]{64}", src.file) else None
        if archive is None or not archive.exists():
            raise NotFound(f"file {src.file!r} not found; upload the {what} first")
        try:
            extract_archive(archive.read_bytes(), staging, limits)
        except UnsafeArchiveError as e:
            raise Invalid(f"file: {e}") from None
        return None
    w, dir_ = _job_dir(session, p, home, src.job, src.path, what)
    shutil.copytree(dir_, staging, symlinks=False)
    return w


def _root_holding(staging: Path, marker: str) -> Path:
    """The directory with ``marker`` (``model.json``, ``delta.json``): the archive's root,
    or its only subdirectory (an archive of the directory itself)."""
    if (staging / marker).exists():
        return staging
    subs = [d for d in staging.iterdir() if d.is_dir()]
    return subs[0] if len(subs) == 1 and (subs[0] / marker).exists() else staging


def _validate_package(root: Path) -> dict[str, Any]:
    """Load the package as the server will; return its manifest. Invalid with the reason."""
    from plinth.train.package import ModelPackage, PackageError

    try:
        pkg = ModelPackage.load(root)
        pkg.predict_records([{}])
    except PackageError as e:
        raise Invalid(f"the package is refused: {e}") from None
    except Exception as e:  # noqa: BLE001 - a damaged or foreign package, whatever broke
        raise Invalid(f"the package is refused: it does not load ({type(e).__name__}: {e})") \
            from None
    return pkg.manifest


def _validate_delta(root: Path, package: Path) -> dict[str, Any]:
    from plinth.train.package import ModelPackage

    try:
        info = json.loads((root / "delta.json").read_text())
        ModelPackage.load(package).apply_delta(root)
    except Exception as e:  # noqa: BLE001 - whatever is wrong, the delta is refused
        raise Invalid(f"the delta is refused: it does not apply to this version "
                      f"({type(e).__name__}: {e})") from None
    return info


def schema_hash(schema: Any) -> str:
    """sha256 of the schema as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def _lineage(manifest: dict[str, Any], src: Source, job: Workload | None) -> dict[str, Any]:
    meta = manifest.get("metadata", {})
    out: dict[str, Any] = {
        "source": {"file": src.file} if src.file else {"job": src.job, "path": src.path or
                                                       "model"},
        "schema_hash": schema_hash(manifest.get("schema")),
        "metrics": meta.get("metrics", {}),
        "step": meta.get("step"),
        "architecture": manifest.get("architecture", {}),
    }
    if job is not None:
        config = job.spec.get("params", {}).get("config")
        out.update({"job": job.id, "job_name": job.name, "code": job.code,
                    "training_config": config,
                    "data": config.get("data") if isinstance(config, dict) else None})
    return out


# ---------------------------------------------------------------------------- changing

def register_version(session: Session, p: Principal, home: Path, name: str, src: Source,
                     limits: Any) -> ModelVersion:
    """Copy, validate and record a new version of ``name`` (created when new)."""
    require_unscoped(p)
    if not NAME_RE.match(name):
        raise Invalid(f"name: {name!r} must be 1-63 lowercase letters, digits, '.', '_' or "
                      "'-', starting and ending with a letter or digit")
    m = session.scalar(select(Model).where(Model.name == name))
    if m is not None and not (p.admin or m.group_id == p.group_id):
        raise Conflict(f"model name {name!r} is taken by another group; choose another name")
    base = home / "models" / name
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".staging-{uuid.uuid4().hex}"
    try:
        job = _stage(session, p, home, src, staging, limits, "package")
        manifest = _validate_package(_root_holding(staging, "model.json"))
        if m is None:
            m = Model(name=name, group_id=p.group_id, created_by=p.user)
            session.add(m)
            session.flush()
        number = (session.scalar(select(func.max(ModelVersion.version))
                                 .where(ModelVersion.model_id == m.id)) or 0) + 1
        final = base / f"v{number}"
        v = ModelVersion(model_id=m.id, version=number,
                         path=str((final / "package").relative_to(home)),
                         lineage=_lineage(manifest, src, job), created_by=p.user,
                         created_at=utcnow())
        session.add(v)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"another version of {name!r} was registered at the same time; "
                           "retry") from None
        shutil.rmtree(final, ignore_errors=True)  # left by a registration rolled back late
        final.mkdir()
        _root_holding(staging, "model.json").rename(final / "package")
        (final / "deltas").mkdir()
        return v
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # a refused first version leaves no directory
            base.rmdir()


def move_alias(session: Session, p: Principal, name: str, alias: str,
               version: int) -> ModelAlias:
    """Point ``alias`` at ``version`` (one row update); the move is kept in the history."""
    require_unscoped(p)
    if not ALIAS_RE.match(alias) or alias.isdigit():
        raise Invalid(f"alias: {alias!r} must be a lowercase name like production or canary")
    m = _model(session, p, name)
    get_version(session, p, name, version)
    a = session.scalar(select(ModelAlias).where(ModelAlias.model_id == m.id,
                                                ModelAlias.alias == alias)
                       .with_for_update())
    before = None if a is None else a.version
    if a is None:
        a = ModelAlias(model_id=m.id, alias=alias, version=version, updated_at=utcnow())
        session.add(a)
    else:
        a.version, a.updated_at = version, utcnow()
    session.add(ModelAliasMove(model_id=m.id, alias=alias, from_version=before,
                               to_version=version, moved_by=p.user, time=utcnow()))
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"alias {alias!r} was created at the same time; retry") from None
    return a


def add_delta(session: Session, p: Principal, home: Path, name: str, ref: str | int, seq: int,
              src: Source, limits: Any) -> ModelDelta:
    """Store delta ``seq`` of version ``ref``: it must be the next number, and apply."""
    if p.scoped:  # a workload token publishes from its own job only
        src = Source(job=p.workload_id, path=src.path) if src.file is None else src
        m = session.scalar(select(Model).where(Model.name == name))
        w = session.get(Workload, p.workload_id)
        if m is None or w is None or m.group_id != w.group_id:
            raise NotFound(f"model {name!r} not found")
        v = session.scalar(select(ModelVersion).where(
            ModelVersion.model_id == m.id,
            ModelVersion.version == _version_number(session, m, ref)))
        if v is None:
            raise NotFound(f"model {name!r} has no version {ref}")
    else:
        v = get_version(session, p, name, ref)
    last = session.scalar(select(func.max(ModelDelta.seq))
                          .where(ModelDelta.version_id == v.id)) or 0
    if seq != last + 1:
        raise Conflict(f"delta {seq} is out of order: version {v.version} of {name!r} has "
                       f"deltas up to {last}; publish delta {last + 1} next")
    base = home / Path(v.path).parent / "deltas"
    staging = base / f".staging-{uuid.uuid4().hex}"
    try:
        _stage(session, p, home, src, staging, limits, "delta")
        root = _root_holding(staging, "delta.json")
        info = _validate_delta(root, home / v.path)
        d = ModelDelta(version_id=v.id, seq=seq, path=str((base / f"delta-{seq:06d}")
                                                          .relative_to(home)),
                       source={"file": src.file} if src.file else
                       {"job": src.job, "path": src.path, "trainer_seq": info.get("seq")},
                       created_by=p.user, created_at=utcnow())
        session.add(d)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"delta {seq} of {name!r} version {v.version} was published at "
                           "the same time; publish the next one") from None
        shutil.rmtree(home / d.path, ignore_errors=True)  # left by a rolled-back publish
        root.rename(home / d.path)
        return d
    finally:
        shutil.rmtree(staging, ignore_errors=True)
