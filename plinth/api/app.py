"""The FastAPI application factory.

``create_app`` builds an app whose lifespan runs the control plane
(``plinth.server.control_plane``: store, executor, control loop, bootstrap,
reconcile) and maps service errors to HTTP statuses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, PendingRollbackError

import plinth
from plinth.api.limits import BodyLimit
from plinth.api.metrics import make_registry
from plinth.api.routers import ALL
from plinth.config import ServerConfig, database_url, plinth_home, secure_home
from plinth.services.errors import ServiceError
from plinth.services.template_model import SUBMISSION_TAGS
from plinth.web import install_console

__all__ = ["create_app"]

log = logging.getLogger("plinth.api")


def _loc(loc: Any) -> str:
    # ("body", "roles", "worker", "replicas") -> "roles.worker.replicas"
    parts = [str(x) for x in loc if x not in ("body",)]
    return ".".join(parts) or "body"


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        # The tags of a union body (a job spec or a templated job) are not fields.
        loc = [x for x in err.get("loc", ()) if x not in SUBMISSION_TAGS]
        where = _loc(loc)
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        out.append(
            {"loc": loc, "msg": f"{where}: {msg}", "type": err.get("type", "")}
        )
    return out


def create_app(
    config: ServerConfig | None = None,
    *,
    home: Path | None = None,
    db_url: str | None = None,
    url: str = "http://127.0.0.1:8321",
) -> FastAPI:
    """Build the app. `home` defaults to PLINTH_HOME, `db_url` to PLINTH_DATABASE_URL or
    SQLite under home, `url` is what replicas get as PLINTH_URL (config `url` wins)."""
    cfg = config or ServerConfig()
    home = secure_home(home or plinth_home())
    db_url = db_url or database_url(home)
    replica_url = cfg.url or url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        from plinth.server import control_plane  # the composition root

        with control_plane(cfg, home, db_url, replica_url) as ctx:
            app.state.metrics_registry = make_registry(ctx.db, ctx.loop)
            app.state.plinth = ctx
            yield {"plinth": ctx}

    app = FastAPI(
        title="Plinth",
        version=plinth.__version__,
        description="Control plane of Plinth: quota groups, users, code uploads, jobs.",
        lifespan=lifespan,
    )
    for router in ALL:
        app.include_router(router)
    install_console(app)  # the web console at / (after the API's routes; plinth/web)
    app.add_middleware(BodyLimit, limit=cfg.api.max_body)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error: %s", exc)
        # A race between two writers (e.g. the same name created twice at once).
        return JSONResponse(
            {"detail": "conflicts with a concurrent change (duplicate?); retry the request"},
            status_code=409,
        )

    @app.exception_handler(InterfaceError)  # the database connection broke mid-request
    @app.exception_handler(PendingRollbackError)
    @app.exception_handler(OperationalError)
    async def _operational(_: Request, exc: Exception) -> JSONResponse:
        log.error("database error: %s", exc)
        return JSONResponse(
            {"detail": "the database is busy or unavailable; retry shortly"}, status_code=503
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    return app
