"""/api/v1/models: the model registry (versions with lineage, aliases, deltas).

Request and response shapes live here (one resource, one module); the rules are in
:mod:`plinth.services.models`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from plinth.api.deps import Caller, Ctx
from plinth.services import models as svc
from plinth.services.files import archive_limits
from plinth.store.models import Model, ModelAlias, ModelDelta, ModelVersion

router = APIRouter(prefix="/api/v1/models", tags=["models"])

Name = Annotated[str, Path(max_length=63)]
Ref = Annotated[str, Path(max_length=63, description="a version number or an alias")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionCreate(_Body):
    """Exactly one of ``file`` (the sha256 of an uploaded .tar.gz of the package) or
    ``job`` (a job whose working directory holds it at ``path``, default ``model``)."""

    file: str | None = Field(None, max_length=64)
    job: str | None = Field(None, max_length=64)
    path: str | None = Field(None, max_length=1024)


class DeltaCreate(_Body):
    """Delta ``seq`` (the next number) from an uploaded archive (``file``) or a directory
    of a job (``job``; a workload token's own job by default) at ``path``."""

    seq: int = Field(ge=1)
    file: str | None = Field(None, max_length=64)
    job: str | None = Field(None, max_length=64)
    path: str | None = Field(None, max_length=1024)


class AliasMove(_Body):
    version: int = Field(ge=1)


class VersionOut(BaseModel):
    model: str
    version: int
    path: str
    lineage: dict[str, Any]
    aliases: list[str]
    created_by: str
    created_at: datetime


class AliasOut(BaseModel):
    model: str
    alias: str
    version: int
    updated_at: datetime


class AliasMoveOut(BaseModel):
    alias: str
    from_version: int | None
    to_version: int
    moved_by: str
    time: datetime


class DeltaOut(BaseModel):
    model: str
    version: int
    seq: int
    path: str
    source: dict[str, Any]
    created_at: datetime


class ModelOut(BaseModel):
    name: str
    created_by: str
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int]
    versions: list[VersionOut] | None = None


def _version_out(m: Model, v: ModelVersion, aliases: list[ModelAlias]) -> VersionOut:
    return VersionOut(model=m.name, version=v.version, path=v.path, lineage=v.lineage,
                      aliases=[a.alias for a in aliases if a.version == v.version],
                      created_by=v.created_by, created_at=v.created_at)


def _model_out(m: Model, versions: list[ModelVersion], aliases: list[ModelAlias],
               full: bool) -> ModelOut:
    return ModelOut(name=m.name, created_by=m.created_by, created_at=m.created_at,
                    latest_version=max((v.version for v in versions), default=None),
                    aliases={a.alias: a.version for a in aliases},
                    versions=[_version_out(m, v, aliases) for v in versions] if full else None)


def _alias_out(name: str, a: ModelAlias) -> AliasOut:
    return AliasOut(model=name, alias=a.alias, version=a.version, updated_at=a.updated_at)


def _delta_out(name: str, version: int, d: ModelDelta) -> DeltaOut:
    return DeltaOut(model=name, version=version, seq=d.seq, path=d.path, source=d.source,
                    created_at=d.created_at)


@router.get("", response_model=list[ModelOut])
def list_models(p: Caller, ctx: Ctx) -> list[ModelOut]:
    """Models the caller may see (admins: all; members: their group's), by name."""
    with ctx.db.read() as s:
        return [_model_out(*svc.get_model(s, p, m.name), full=False)
                for m in svc.list_models(s, p)]


@router.get("/{name}", response_model=ModelOut)
def get_model(name: Name, p: Caller, ctx: Ctx) -> ModelOut:
    """One model with its versions and aliases."""
    with ctx.db.read() as s:
        return _model_out(*svc.get_model(s, p, name), full=True)


@router.post("/{name}/versions", status_code=201, response_model=VersionOut)
def register_version(name: Name, req: VersionCreate, p: Caller, ctx: Ctx) -> VersionOut:
    """Register a package as the next version (the model is created on its first version).
    The package is copied into the artifact store and loaded; a broken or foreign one is
    refused (422) with the reason and nothing changes."""
    with ctx.db.session() as s:
        v = svc.register_version(s, p, ctx.home, name,
                                 svc.Source(file=req.file, job=req.job, path=req.path),
                                 archive_limits(ctx.cfg.uploads))
        m, _, aliases = svc.get_model(s, p, name)
        return _version_out(m, v, aliases)


@router.get("/{name}/versions", response_model=list[VersionOut])
def list_versions(name: Name, p: Caller, ctx: Ctx) -> list[VersionOut]:
    with ctx.db.read() as s:
        m, versions, aliases = svc.get_model(s, p, name)
        return [_version_out(m, v, aliases) for v in versions]


@router.get("/{name}/versions/{ref}", response_model=VersionOut)
def get_version(name: Name, ref: Ref, p: Caller, ctx: Ctx) -> VersionOut:
    """A version by number or alias (``/versions/production``)."""
    with ctx.db.read() as s:
        v = svc.get_version(s, p, name, ref)
        m, _, aliases = svc.get_model(s, p, name)
        return _version_out(m, v, aliases)


@router.put("/{name}/aliases/{alias}", response_model=AliasOut)
def move_alias(name: Name, alias: Annotated[str, Path(max_length=63)], req: AliasMove,
               p: Caller, ctx: Ctx) -> AliasOut:
    """Point an alias at a version (created when new); the move joins its history."""
    with ctx.db.session() as s:
        return _alias_out(name, svc.move_alias(s, p, name, alias, req.version))


@router.get("/{name}/history", response_model=list[AliasMoveOut])
def alias_history(name: Name, p: Caller, ctx: Ctx,
                  alias: Annotated[str | None, Query(max_length=63)] = None
                  ) -> list[AliasMoveOut]:
    """Every move of the model's aliases (or of one), oldest first."""
    with ctx.db.read() as s:
        return [AliasMoveOut(alias=h.alias, from_version=h.from_version,
                             to_version=h.to_version, moved_by=h.moved_by, time=h.time)
                for h in svc.alias_history(s, p, name, alias)]


@router.post("/{name}/versions/{ref}/deltas", status_code=201, response_model=DeltaOut)
def add_delta(name: Name, ref: Ref, req: DeltaCreate, p: Caller, ctx: Ctx) -> DeltaOut:
    """Publish delta ``seq`` of a version (a member of the model's group, or a workload
    token of that group's job). Only the next number is accepted (409 otherwise); a
    delta that does not apply to the version is refused (422); nothing changes then."""
    with ctx.db.session() as s:
        d = svc.add_delta(s, p, ctx.home, name, ref, req.seq,
                          svc.Source(file=req.file, job=req.job, path=req.path),
                          archive_limits(ctx.cfg.uploads))
        v = s.get(ModelVersion, d.version_id)
        return _delta_out(name, v.version, d)


@router.get("/{name}/versions/{ref}/deltas", response_model=list[DeltaOut])
def list_deltas(name: Name, ref: Ref, p: Caller, ctx: Ctx,
                after: Annotated[int, Query(ge=0)] = 0) -> list[DeltaOut]:
    """The version's deltas after sequence number ``after``, in order."""
    with ctx.db.read() as s:
        v = svc.get_version(s, p, name, ref)
        return [_delta_out(name, v.version, d)
                for d in svc.list_deltas(s, p, name, ref, after)]


__all__ = ["AliasMoveOut", "router"]
