"""/api/v1/templates: publish templates (presets), list them, read their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from plinth.api.deps import Caller, Ctx
from plinth.services import templates as svc
from plinth.services.specs import NAME_PATTERN
from plinth.services.template_model import TemplateDocument

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])

TemplateName = Annotated[str, Path(pattern=NAME_PATTERN, description="the template's name")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="a version number")]


class TemplateOut(BaseModel):
    """One version of a template (``document`` is what was published)."""

    name: str
    group: str | None = Field(description="the owning group; null: a platform template")
    version: int
    latest_version: int
    description: str
    parameters: list[dict[str, Any]]
    presets: dict[str, Any]
    spec: dict[str, Any]
    created_by: str = Field(description="who published this version ('plinth': built-in)")
    created_at: datetime = Field(description="when this version was published")
    updated_at: datetime = Field(description="when the template's latest version was")


def _out(v: svc.TemplateView) -> TemplateOut:
    d = v.document
    return TemplateOut(
        name=v.name, group=v.group, version=v.version, latest_version=v.latest_version,
        description=d.get("description", ""), parameters=d.get("parameters", []),
        presets=d.get("presets", {}), spec=d.get("spec", {}), created_by=v.created_by,
        created_at=v.created_at, updated_at=v.updated_at,
    )  # fmt: skip


@router.post("", status_code=201, response_model=TemplateOut)
def publish_template(doc: TemplateDocument, p: Caller, ctx: Ctx, response: Response) -> TemplateOut:
    """Publish a template: version 1 of a new name, else the next version (201). The
    same document as the latest version adds nothing: 200 with that version."""
    with ctx.db.session() as s:
        view, created = svc.publish_template(s, p, doc)
    if not created:
        response.status_code = 200
    return _out(view)


@router.get("", response_model=list[TemplateOut])
def list_templates(p: Caller, ctx: Ctx) -> list[TemplateOut]:
    """The latest version of every template the caller may use, by name."""
    with ctx.db.read() as s:
        return [_out(v) for v in svc.list_templates(s, p)]


@router.get("/{name}", response_model=TemplateOut)
def get_template(name: TemplateName, p: Caller, ctx: Ctx) -> TemplateOut:
    """The latest version of a template."""
    with ctx.db.read() as s:
        return _out(svc.get_template(s, p, name))


@router.get("/{name}/versions", response_model=list[TemplateOut])
def list_versions(name: TemplateName, p: Caller, ctx: Ctx) -> list[TemplateOut]:
    """Every version of a template, oldest first (versions never change)."""
    with ctx.db.read() as s:
        return [_out(v) for v in svc.list_versions(s, p, name)]


@router.get("/{name}/versions/{version}", response_model=TemplateOut)
def get_version(name: TemplateName, version: Version, p: Caller, ctx: Ctx) -> TemplateOut:
    """One version of a template."""
    with ctx.db.read() as s:
        return _out(svc.get_template(s, p, name, version))
