"""The console's routes: pages (GET) and the forms that act (POST).

Every page and action calls the REST API's own handlers (``plinth.api.routers``)
with the session's principal, so it goes through the same services, the same
authorization and the same validation as ``/api/v1`` -- a member sees its group
only because the services say so, not because a page hides a link. None of these
routes is in the OpenAPI schema: the console is not an API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from plinth.api.context import AppContext
from plinth.api.routers import deployments as deployments_api
from plinth.api.routers import groups as groups_api
from plinth.api.routers import job_metrics as metrics_api
from plinth.api.routers import jobs as jobs_api
from plinth.api.routers import models as models_api
from plinth.api.routers import nodes as nodes_api
from plinth.api.routers import notebooks as notebooks_api
from plinth.api.routers import queue as queue_api
from plinth.api.routers import quotas as quotas_api
from plinth.api.routers import reservations as reservations_api
from plinth.api.routers import users as users_api
from plinth.services.auth import authenticate, hash_token, require_admin
from plinth.services.deployments import DeploymentScale, TrafficSplit
from plinth.services.errors import Unauthorized
from plinth.services.notebooks import NotebookCreate, NotebookExtend
from plinth.services.specs import (
    NAME_PATTERN,
    ROLE_PATTERN,
    ExpansionCreate,
    GroupCreate,
    ReservationCreate,
    UserCreate,
)
from plinth.services.template_model import JobSubmission
from plinth.web import forms
from plinth.web.security import (
    ConsoleError,
    Viewer,
    check_origin,
    context,
    read_form,
    service_errors,
    sessions,
    viewer,
)
from plinth.web.sessions import COOKIE

__all__ = ["router", "templates"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
Me = Annotated[Viewer, Depends(viewer)]
LOGIN_COOKIE = "plinth_login"  # the login form's double-submit CSRF token
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
StateName = Literal[
    "pending", "admitted", "running", "succeeded", "failed", "cancelled", "timed_out"
]
JobId = Annotated[str, PathParam(max_length=64)]
Name = Annotated[str, PathParam(max_length=63)]
_job_submission = TypeAdapter(JobSubmission)
#: Pages load scripts and styles from this server only; no page may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _ctx(request: Request) -> AppContext:
    return context(request)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def page(request: Request, name: str, me: Viewer | None, status: int = 200,
         **values: Any) -> HTMLResponse:  # fmt: skip
    """Render template `name` with the viewer, its CSRF token and the active tab."""
    resp = templates.TemplateResponse(
        request, name, {"me": me, "now": datetime.now(UTC), "final": FINAL, **values},
        status_code=status, headers=SECURITY_HEADERS,
    )  # fmt: skip
    return resp


def fragment(request: Request) -> bool:
    """An htmx poll asks for the page's live part only."""
    return request.headers.get("hx-request") == "true"


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    # Only a path on this server: never "//host" or "https://elsewhere".
    # Browsers drop tabs and newlines inside URLs ("/\t/evil" would become "//evil").
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or not target.isprintable() or " " in target):
        return "/"
    return target


# ---- login ------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: Annotated[str | None, Query(max_length=500)] = None
               ) -> Response:  # fmt: skip
    import secrets

    token = secrets.token_urlsafe(32)
    resp = page(request, "login.html", None, next=_safe_next(next), login_csrf=token)
    resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/login", httponly=True,
                    samesite="strict", secure=_secure(request))  # fmt: skip
    return resp


@router.post("/login")
async def login(request: Request) -> Response:
    login_csrf = request.cookies.get(LOGIN_COOKIE)
    if not login_csrf:
        check_origin(request)
        raise ConsoleError(403, "the login form expired or cookies are off: reload the page")
    form = await read_form(request, login_csrf)
    token = form.get("token", "").strip()
    ctx = _ctx(request)

    def check() -> str | None:
        try:
            with ctx.db.read() as s:
                p = authenticate(s, token)
        except Unauthorized as e:
            return e.message
        if p.scoped or p.session_id is not None:
            return "a workload's token cannot log in to the console: use your own token"
        return None

    why = await run_in_threadpool(check) if token else "paste your API token"
    if why is not None:
        return page(request, "login.html", None, status=401, error=why,
                    next=_safe_next(form.get("next")), login_csrf=request.cookies.get(LOGIN_COOKIE))  # fmt: skip
    sessions(request).drop(request.cookies.get(COOKIE))  # a new id at each login
    sid, _ = sessions(request).create(hash_token(token))
    resp = back(_safe_next(form.get("next")))
    resp.set_cookie(COOKIE, sid, path="/", httponly=True, samesite="strict",
                    secure=_secure(request))  # fmt: skip
    resp.delete_cookie(LOGIN_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request, me: Me) -> Response:
    await read_form(request, me.csrf)
    sessions(request).drop(me.sid)
    resp = back("/login")
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


# ---- overview and queue -----------------------------------------------------------


def _bars(g: Any) -> list[dict[str, Any]]:
    """Per resource: nominal, used, borrowed, lent, expansion and the bar's segments
    (percent of the widest of nominal and used)."""
    st = g.status
    if st is None:
        return []
    out = []
    for key, unit in (("cpu", "cores"), ("memory", "MiB"), ("gpu", "GPUs")):
        nominal = float(getattr(st.nominal, key))
        used = float(getattr(st.used, key))
        borrowed = float(getattr(st.borrowed, key))
        lent = float(getattr(st.lent, key))
        exp = float(getattr(st.expansion, key))
        if not (nominal or used or lent):
            continue
        scale = max(nominal, used, 1e-9)
        own = min(used, nominal)
        out.append({
            "key": key, "unit": unit, "nominal": nominal, "used": used, "borrowed": borrowed,
            "lent": lent, "expansion": exp,
            "own_pct": 100 * own / scale, "borrowed_pct": 100 * borrowed / scale,
            "lent_pct": 100 * min(lent, max(nominal - own, 0)) / scale,
            "exp_pct": 100 * exp / scale,
        })  # fmt: skip
    return out


def _usage(ctx: AppContext, groups: list[str], hours: float) -> dict[str, Any]:
    """The usage chart's series for `groups` (those the viewer may see)."""
    from sqlalchemy import select

    from plinth.scheduler.resources import Resources
    from plinth.store.models import Group, Workload
    from plinth.web.usage import Running, usage_series

    with ctx.db.read() as s:
        rows = s.execute(
            select(Group.name, Workload.started_at, Workload.demand)
            .join(Group, Workload.group_id == Group.id)
            .where(Workload.state == "running", Group.name.in_(groups))
        ).all()  # fmt: skip
    running = [
        Running(g, started.replace(tzinfo=started.tzinfo or UTC).timestamp(),
                Resources(float(d.get("cpu", 0)), int(d.get("memory", 0)), int(d.get("gpu", 0))))
        for g, started, d in rows if started is not None
    ]  # fmt: skip
    return usage_series(ctx.loop.usage(), running, groups, datetime.now(UTC).timestamp(),
                        span_s=hours * 3600)  # fmt: skip


@router.get("/")
def overview(request: Request, me: Me,
             hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24) -> HTMLResponse:  # fmt: skip
    ctx = _ctx(request)
    with service_errors():
        groups = groups_api.list_groups(me.p, ctx)
        nodes = nodes_api.list_nodes(me.p, ctx)
    usage = _usage(ctx, [g.name for g in groups], hours)
    return page(request, "overview.html", me, tab="overview", nodes=nodes, usage=usage,
                hours=hours, groups=[(g, _bars(g)) for g in groups])  # fmt: skip


@router.get("/queue")
def queue(request: Request, me: Me,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> HTMLResponse:  # fmt: skip
    with service_errors():
        entries = queue_api.get_queue(me.p, _ctx(request), limit)
    name = "_queue_table.html" if fragment(request) else "queue.html"
    return page(request, name, me, tab="queue", entries=entries)


# ---- jobs -------------------------------------------------------------------------


@router.get("/jobs")
def jobs(
    request: Request, me: Me,
    state: StateName | None = None,
    group: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> HTMLResponse:  # fmt: skip
    with service_errors():
        rows = jobs_api.list_jobs(me.p, _ctx(request), state, group, limit)
    if q:
        needle = q.lower()
        rows = [j for j in rows if needle in j.name.lower() or needle in j.id
                or needle in j.user.lower()]  # fmt: skip
    name = "_jobs_table.html" if fragment(request) else "jobs.html"
    return page(request, name, me, tab="jobs", jobs=rows, state=state, group=group, q=q,
                limit=limit, states=StateName.__args__)  # fmt: skip


def _groups_for(me: Viewer, ctx: AppContext) -> list[str]:
    with service_errors():
        return [g.name for g in groups_api.list_groups(me.p, ctx)]


@router.get("/jobs/new")
def new_job(request: Request, me: Me) -> HTMLResponse:
    return page(request, "job_new.html", me, tab="jobs",
                groups=_groups_for(me, _ctx(request)))  # fmt: skip


@router.post("/jobs")
async def submit_job(request: Request, me: Me) -> Response:
    form = await read_form(request, me.csrf)
    ctx = _ctx(request)

    def act() -> str:
        with service_errors():
            spec = _job_submission.validate_python(forms.job_body(form))
            return jobs_api.submit_job(spec, me.p, ctx).id

    return back(f"/jobs/{await run_in_threadpool(act)}")


@router.get("/jobs/{job_id}")
def job_detail(request: Request, me: Me, job_id: JobId,
               part: Literal["live", "logs"] = "live") -> HTMLResponse:  # fmt: skip
    """The job's page; htmx polls get its live part, or its logs part (`part`)."""
    ctx = _ctx(request)
    with service_errors():
        job = jobs_api.get_job(job_id, me.p, ctx)
        replicas = jobs_api.job_replicas(job_id, me.p, ctx)
        events = jobs_api.job_events(job_id, me.p, ctx)
        explain = jobs_api.explain(job_id, me.p, ctx) if job.state == "pending" else None
    latest: dict[tuple[str, int], Any] = {}
    for r in replicas:  # the latest attempt of each replica
        if (r.role, r.replica) not in latest or r.attempt > latest[(r.role, r.replica)].attempt:
            latest[(r.role, r.replica)] = r
    name = "job.html" if not fragment(request) else f"_job_{part}.html"
    return page(request, name, me, tab="jobs", job=job, replicas=replicas, events=events,
                explain=explain, logs=sorted(latest.values(), key=lambda r: (r.role, r.replica)))  # fmt: skip


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, me: Me, job_id: JobId) -> Response:
    await read_form(request, me.csrf)

    def act() -> None:
        with service_errors():
            jobs_api.cancel_job(job_id, me.p, _ctx(request))

    await run_in_threadpool(act)
    return back(f"/jobs/{job_id}")


@router.get("/jobs/{job_id}/log/{role}/{replica}")
def job_log(
    request: Request, me: Me, job_id: JobId,
    role: Annotated[str, PathParam(pattern=ROLE_PATTERN)],
    replica: Annotated[int, PathParam(ge=0, le=1_000_000)],
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> Response:  # fmt: skip
    """The replica's log from `offset` (text; X-Log-Offset, X-Log-Complete), for the
    job page's follow view."""
    with service_errors():
        return jobs_api.job_logs(job_id, role, replica, me.p, _ctx(request), None, offset)


@router.get("/jobs/{job_id}/metrics.json")
def job_metrics(
    request: Request, me: Me, job_id: JobId,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> JSONResponse:  # fmt: skip
    """The job's metric points after `after` (the API's shape), for the chart."""
    with service_errors():
        out = metrics_api.get_metrics(job_id, me.p, _ctx(request), None, after)
    return JSONResponse(out.model_dump(mode="json"))


# ---- notebooks --------------------------------------------------------------------


@router.get("/notebooks")
def notebooks(request: Request, me: Me) -> HTMLResponse:
    ctx = _ctx(request)
    with service_errors():
        rows = notebooks_api.list_notebooks(me.p, ctx, None, 200)
    now = datetime.now(UTC)
    left = {n.id: max((n.ends_at - now).total_seconds(), 0) if n.ends_at else None
            for n in rows}  # fmt: skip
    name = "_notebooks_table.html" if fragment(request) else "notebooks.html"
    return page(request, name, me, tab="notebooks", notebooks=rows, left=left,
                groups=_groups_for(me, ctx))  # fmt: skip


@router.post("/notebooks")
async def start_notebook(request: Request, me: Me) -> Response:
    form = await read_form(request, me.csrf)

    def act() -> None:
        with service_errors():
            req = NotebookCreate.model_validate(forms.notebook_body(form))
            notebooks_api.start_notebook(req, me.p, _ctx(request))

    await run_in_threadpool(act)
    return back("/notebooks")


@router.post("/notebooks/{notebook_id}/{action}")
async def notebook_action(request: Request, me: Me, notebook_id: JobId,
                          action: Literal["stop", "extend"]) -> Response:  # fmt: skip
    form = await read_form(request, me.csrf)

    def act() -> None:
        with service_errors():
            if action == "stop":
                notebooks_api.stop_notebook(notebook_id, me.p, _ctx(request))
            else:
                body = NotebookExtend.model_validate({"by": form.get("by", "").strip()})
                notebooks_api.extend_notebook(notebook_id, body, me.p, _ctx(request))

    await run_in_threadpool(act)
    return back("/notebooks")


# ---- models -----------------------------------------------------------------------


@router.get("/models")
def models(request: Request, me: Me) -> HTMLResponse:
    with service_errors():
        rows = models_api.list_models(me.p, _ctx(request))
    return page(request, "models.html", me, tab="models", models=rows)


@router.get("/models/{name}")
def model_detail(request: Request, me: Me, name: Name) -> HTMLResponse:
    ctx = _ctx(request)
    with service_errors():
        model = models_api.get_model(name, me.p, ctx)
        history = models_api.alias_history(name, me.p, ctx, None)
    return page(request, "model.html", me, tab="models", model=model, history=history)


@router.post("/models/{name}/aliases")
async def move_alias(request: Request, me: Me, name: Name) -> Response:
    form = await read_form(request, me.csrf)

    def act() -> None:
        with service_errors():
            alias = form.get("alias", "").strip()
            if not alias or len(alias) > 63:
                raise ConsoleError(422, "alias: give an alias name (e.g. production)")
            req = models_api.AliasMove.model_validate({"version": form.get("version", "")})
            models_api.move_alias(name, alias, req, me.p, _ctx(request))

    await run_in_threadpool(act)
    return back(f"/models/{name}")


# ---- deployments ------------------------------------------------------------------


@router.get("/deployments")
def deployments(request: Request, me: Me, all: bool = False) -> HTMLResponse:
    with service_errors():
        rows = deployments_api.list_deployments(me.p, _ctx(request), all, 200)
    return page(request, "deployments.html", me, tab="deployments", deployments=rows,
                all=all)  # fmt: skip


def _last_delta(events: list[Any]) -> Any:
    """The latest ``deltas_applied`` event (the API's events are oldest first)."""
    return next((e for e in reversed(events) if e.type == "deltas_applied"), None)


@router.get("/deployments/{name}")
def deployment_detail(request: Request, me: Me, name: Name) -> HTMLResponse:
    ctx = _ctx(request)
    with service_errors():
        d = deployments_api.get_deployment(name, me.p, ctx)
        events = deployments_api.deployment_events(name, me.p, ctx)
    return page(request, "deployment.html", me, tab="deployments", d=d, events=events,
                last_delta=_last_delta(events))  # fmt: skip


@router.post("/deployments/{name}/{action}")
async def deployment_action(request: Request, me: Me, name: Name,
                            action: Literal["scale", "traffic", "delete"]) -> Response:  # fmt: skip
    form = await read_form(request, me.csrf)
    ctx = _ctx(request)

    def act() -> None:
        with service_errors():
            if action == "scale":
                body = DeploymentScale.model_validate({"replicas": form.get("replicas", "").strip()})
                deployments_api.scale_deployment(name, body, me.p, ctx)
            elif action == "traffic":
                body2 = TrafficSplit.model_validate(
                    {"canary_percent": form.get("canary_percent", "").strip()})
                deployments_api.split_traffic(name, body2, me.p, ctx)
            else:
                deployments_api.delete_deployment(name, me.p, ctx)

    await run_in_threadpool(act)
    return back(f"/deployments/{name}")


# ---- admin ------------------------------------------------------------------------


@router.get("/admin")
def admin(request: Request, me: Me) -> HTMLResponse:
    ctx = _ctx(request)
    with service_errors():
        require_admin(me.p)
        groups = groups_api.list_groups(me.p, ctx)
        users = users_api.list_users(me.p, ctx)
        expansions = quotas_api.list_expansions(me.p, ctx, False)
        reservations = reservations_api.list_reservations(me.p, ctx, False)
        nodes = nodes_api.list_nodes(me.p, ctx)
    return page(request, "admin.html", me, tab="admin", groups=groups, users=users,
                expansions=expansions, reservations=reservations, nodes=nodes,
                created_token=None)  # fmt: skip


@router.post("/admin/{what}")
async def admin_create(request: Request, me: Me,
                       what: Literal["groups", "users", "expansions", "reservations"]
                       ) -> Response:  # fmt: skip
    form = await read_form(request, me.csrf)
    ctx = _ctx(request)

    def act() -> str | None:
        with service_errors():
            require_admin(me.p)
            if what == "groups":
                groups_api.create_group(GroupCreate.model_validate(forms.group_body(form)),
                                        me.p, ctx)  # fmt: skip
            elif what == "users":
                made = users_api.create_user(UserCreate.model_validate(forms.user_body(form)),
                                             me.p, ctx)  # fmt: skip
                return made.token
            elif what == "expansions":
                quotas_api.grant_expansion(
                    ExpansionCreate.model_validate(forms.expansion_body(form)), me.p, ctx)
            else:
                reservations_api.create_reservation(
                    ReservationCreate.model_validate(forms.reservation_body(form)), me.p, ctx)
        return None

    token = await run_in_threadpool(act)
    if token is None:
        return back("/admin")
    # The new user's token is shown once, on this response only (never stored plain).
    resp = await run_in_threadpool(admin, request, me)
    return page(request, "admin.html", me, tab="admin", created_token=token,
                created_user=form.get("name", ""), **{k: v for k, v in resp.context.items()
                if k in ("groups", "users", "expansions", "reservations", "nodes")})  # fmt: skip


@router.post("/admin/expansions/{expansion_id}/revoke")
async def revoke_expansion(request: Request, me: Me,
                           expansion_id: Annotated[int, PathParam(ge=1, le=2**62)]
                           ) -> Response:  # fmt: skip
    form = await read_form(request, me.csrf)

    def act() -> None:
        with service_errors():
            reason = form.get("reason", "").strip() or "revoked in the console"
            quotas_api.revoke_expansion(expansion_id, me.p, _ctx(request), reason[:1000])

    await run_in_threadpool(act)
    return back("/admin")


@router.post("/admin/reservations/{rid}/delete")
async def delete_reservation(request: Request, me: Me,
                             rid: Annotated[str, PathParam(max_length=64)]) -> Response:
    await read_form(request, me.csrf)

    def act() -> None:
        with service_errors():
            reservations_api.delete_reservation(rid, me.p, _ctx(request))

    await run_in_threadpool(act)
    return back("/admin")

