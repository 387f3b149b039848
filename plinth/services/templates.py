"""Templates (presets): publish, read, list their versions, expand one into a job spec.

Who may do what (docs/templates.md):

- every user (and a workload token) reads the platform's templates (no group) and
  its own group's; admins read all. Anything else is reported as not found.
- admins publish platform templates (``group`` omitted) and any group's; members
  publish templates of their own group only (``group`` defaults to theirs) and may not
  write a platform preset (``presets.platform``: resources and limits are the admins').
- publishing a name that exists adds the next version (same owner required); a
  version is never changed. Publishing the same document as the latest version adds
  nothing and returns that version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from plinth.services.auth import Principal, require_unscoped
from plinth.services.errors import Conflict, Forbidden, Invalid, NotFound
from plinth.services.specs import JobSpec
from plinth.services.template_model import (
    ParamError,
    TemplatedJob,
    TemplateDocument,
    resolve_params,
)
from plinth.services.template_render import TemplateRenderError, render_spec
from plinth.store.models import Group, Template, TemplateVersion, utcnow

__all__ = [
    "BUILTIN_AUTHOR",
    "TemplateView",
    "expand_job",
    "get_template",
    "list_templates",
    "list_versions",
    "publish_template",
    "register_builtin_templates",
]

#: ``created_by`` of the versions the server registers itself (built-in templates).
BUILTIN_AUTHOR = "plinth"
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class TemplateView:
    """One version of a template, with what the listing shows about the template."""

    name: str
    group: str | None
    version: int
    latest_version: int
    document: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


def _group_names(session: Session, ids: set[int | None]) -> dict[int | None, str | None]:
    real = {i for i in ids if i is not None}
    names: dict[int | None, str | None] = {None: None}
    if real:
        names.update(session.execute(select(Group.id, Group.name).where(Group.id.in_(real))).all())
    return names


def _may_read(p: Principal, t: Template) -> bool:
    return p.admin or t.group_id is None or t.group_id == p.group_id


def _template(session: Session, p: Principal, name: str) -> Template:
    t = session.scalar(select(Template).where(Template.name == name))
    if t is None or not _may_read(p, t):
        raise NotFound(f"template {name!r} not found (see `plinth template list`)")
    return t


def _version(session: Session, t: Template, version: int | None) -> TemplateVersion:
    n = t.latest_version if version is None else version
    v = session.scalar(
        select(TemplateVersion).where(
            TemplateVersion.template_id == t.id, TemplateVersion.version == n
        )
    )
    if v is None:
        raise NotFound(f"template {t.name!r} has no version {n} (latest: {t.latest_version})")
    return v


def _view(t: Template, v: TemplateVersion, group: str | None) -> TemplateView:
    return TemplateView(
        name=t.name, group=group, version=v.version, latest_version=t.latest_version,
        document=v.document, created_by=v.created_by, created_at=v.created_at,
        updated_at=t.updated_at,
    )  # fmt: skip


def get_template(
    session: Session, p: Principal, name: str, version: int | None = None
) -> TemplateView:
    """One version (default: the latest) of a template the caller may read."""
    t = _template(session, p, name)
    return _view(t, _version(session, t, version), _group_names(session, {t.group_id})[t.group_id])


def list_templates(session: Session, p: Principal) -> list[TemplateView]:
    """The latest version of every template the caller may read, by name."""
    q = select(Template, TemplateVersion).join(
        TemplateVersion,
        (TemplateVersion.template_id == Template.id)
        & (TemplateVersion.version == Template.latest_version),
    )
    if not p.admin:
        q = q.where((Template.group_id.is_(None)) | (Template.group_id == p.group_id))
    rows = session.execute(q.order_by(Template.name)).all()
    names = _group_names(session, {t.group_id for t, _ in rows})
    return [_view(t, v, names[t.group_id]) for t, v in rows]


def list_versions(session: Session, p: Principal, name: str) -> list[TemplateView]:
    """Every version of a template, oldest first."""
    t = _template(session, p, name)
    group = _group_names(session, {t.group_id})[t.group_id]
    vs = session.scalars(
        select(TemplateVersion)
        .where(TemplateVersion.template_id == t.id)
        .order_by(TemplateVersion.version)
    )
    return [_view(t, v, group) for v in vs]


def _owner_group(session: Session, p: Principal, doc: TemplateDocument) -> int | None:
    """The group id the template belongs to (None: platform); Forbidden when the caller
    may not publish there."""
    group = doc.group
    if group is None and not p.admin:
        group = p.group  # a member's template is its group's
    if doc.presets.platform and not p.admin:
        raise Forbidden(
            "presets.platform: only admins set the platform preset (resources, limits); "
            "remove it, or give the values as parameter defaults"
        )
    if group is None:
        return None
    if not p.admin and group != p.group:
        raise Forbidden(
            f"group: members publish templates of their own group {p.group!r} only, "
            f"not {group!r}"
        )
    gid = session.scalar(select(Group.id).where(Group.name == group))
    if gid is None:
        raise Invalid(f"group: no group named {group!r}")
    return gid


def publish_template(
    session: Session, p: Principal, doc: TemplateDocument, *, author: str | None = None
) -> tuple[TemplateView, bool]:
    """Add ``doc`` as version 1 of a new template or the next version of an existing one.

    Returns the version and whether it was created (False: ``doc`` equals the latest
    version, which is returned). ``author`` overrides ``created_by`` (built-ins)."""
    require_unscoped(p)
    gid = _owner_group(session, p, doc)
    stored = doc.model_dump(mode="json", exclude={"group"})
    author = author or p.user
    now = utcnow()
    t = session.scalar(select(Template).where(Template.name == doc.name).with_for_update())
    if t is None:
        t = Template(name=doc.name, group_id=gid, latest_version=1, created_by=author,
                     created_at=now, updated_at=now)  # fmt: skip
        session.add(t)
        session.flush()
        version = 1
    else:
        if not _may_read(p, t):
            raise Conflict(f"name {doc.name!r} is taken by another group's template; pick another")
        if t.group_id != gid:
            raise Conflict(
                f"template {doc.name!r} belongs to "
                f"{_group_names(session, {t.group_id})[t.group_id] or 'the platform'}; "
                "a new version cannot change its owner"
            )
        latest = _version(session, t, None)
        if latest.document == stored:
            return _view(t, latest, doc.group if gid is not None else None), False
        version = t.latest_version + 1
        t.latest_version = version
        t.updated_at = now
    v = TemplateVersion(template_id=t.id, version=version, document=stored, created_by=author,
                        created_at=now)  # fmt: skip
    session.add(v)
    session.flush()
    return _view(t, v, _group_names(session, {gid})[gid]), True


def _check_paths(
    doc: TemplateDocument, values: dict[str, Any], p: Principal, home: Path
) -> None:
    """Every ``path`` parameter names an existing absolute path on the server; members'
    paths may not lie under the server's home (its database, tokens, other jobs)."""
    private = os.path.realpath(home)
    for param in doc.parameters:
        v = values.get(param.name)
        if param.type != "path" or v is None:
            continue
        where = f"params.{param.name}"
        if not os.path.isabs(v) or ".." in Path(v).parts:
            raise ParamError(f"{where}: give an absolute path without '..', got {v!r}")
        real = os.path.realpath(v)
        if not p.admin and (real == private or real.startswith(private + os.sep)):
            raise ParamError(f"{where}: {v!r} is inside the server's private home")
        if not os.path.exists(real):
            raise ParamError(f"{where}: {v!r} does not exist on the server")


def expand_job(
    session: Session, p: Principal, sub: TemplatedJob, home: Path
) -> tuple[JobSpec, dict[str, Any]]:
    """The job spec a templated submission expands to, and the record the job keeps:
    ``{"name", "version", "params"}`` (every parameter's resolved value).

    Raises Invalid (422) naming the problem: an unknown template or version, an
    unknown, mistyped, out-of-range or missing parameter, a missing path, a template
    the sandbox refuses, or an expansion that is not a valid job spec."""
    require_unscoped(p)
    try:
        t = _template(session, p, sub.template)
        v = _version(session, t, sub.version)
    except NotFound as e:
        raise Invalid(f"template: {e.message}") from None
    what = f"template {t.name!r} version {v.version}"
    try:  # stored versions are checked again: today's rules apply to old versions too
        doc = TemplateDocument.model_validate({**v.document, "group": None})
    except ValidationError as e:
        raise Invalid(f"{what}: {_problems(e)}") from None
    try:
        values = resolve_params(doc, sub.params)
        _check_paths(doc, values, p, home)
        rendered = render_spec(doc.spec, values)
    except (ParamError, TemplateRenderError) as e:
        raise Invalid(f"{what}: {e}") from None
    rendered.setdefault("name", t.name)
    for key in ("name", "group", "priority", "code"):
        given = getattr(sub, key)
        if given is not None:
            rendered[key] = given.model_dump() if key == "code" else given
    try:
        spec = JobSpec.model_validate(rendered)
    except ValidationError as e:
        raise Invalid(f"{what} expands to an invalid job spec: {_problems(e)}") from None
    record = {"name": t.name, "version": v.version, "params": dict(sorted(values.items()))}
    return spec, record


def _problems(e: ValidationError) -> str:
    """Pydantic's errors as ``loc: message; ...``."""
    return "; ".join(
        (f"{'.'.join(map(str, err['loc']))}: " if err["loc"] else "")
        + str(err["msg"]).removeprefix("Value error, ")
        for err in e.errors()
    )


def builtin_documents() -> list[TemplateDocument]:
    """The templates shipped with the server (``plinth/templates/*.yaml``)."""
    import yaml

    return [
        TemplateDocument.model_validate(yaml.safe_load(f.read_text(encoding="utf-8")))
        for f in sorted(BUILTIN_DIR.glob("*.yaml"))
    ]


def register_builtin_templates(session: Session) -> list[str]:
    """Publish each built-in template unless a version with its exact content was
    registered before (so an admin's later version stays the latest until Plinth ships
    a changed built-in). Returns ``name vN`` of what it published."""
    system = Principal(0, BUILTIN_AUTHOR, 0, "", admin=True)
    done = []
    for doc in builtin_documents():
        stored = doc.model_dump(mode="json", exclude={"group"})
        earlier = session.scalars(
            select(TemplateVersion.document)
            .join(Template, TemplateVersion.template_id == Template.id)
            .where(Template.name == doc.name, TemplateVersion.created_by == BUILTIN_AUTHOR)
        )
        seen = any(d == stored for d in earlier)
        if seen:
            continue
        try:
            with session.begin_nested():  # another server starting on the same database
                view, created = publish_template(session, system, doc, author=BUILTIN_AUTHOR)
        except IntegrityError:
            continue  # ... registered it at the same moment
        if created:
            done.append(f"{view.name} v{view.version}")
    return done
