"""The web console: server-rendered pages at ``/`` over the same services as the API.

``install_console(app)`` adds the pages (:mod:`plinth.web.pages`, none of them in the
OpenAPI schema), the vendored static files at ``/static`` and the console's error
pages. Sessions and CSRF: :mod:`plinth.web.sessions`, :mod:`plinth.web.security`.
See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from plinth.web.security import ConsoleError, LoginRequired
from plinth.web.sessions import SessionStore

__all__ = ["install_console"]

STATIC = Path(__file__).parent / "static"


def _wants_page(request: Request) -> bool:
    return request.method == "GET" and request.headers.get("hx-request") != "true"


def install_console(app: FastAPI) -> None:
    """Serve the console from `app` (its routes come after the API's)."""
    from urllib.parse import quote

    from plinth.web.pages import page, router

    app.state.console_sessions = SessionStore()
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="console-static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        if _wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return PlainTextResponse("log in first: your console session ended", status_code=401)

    @app.exception_handler(ConsoleError)
    async def _refused(request: Request, exc: ConsoleError) -> Response:
        if request.headers.get("hx-request") == "true" or not request.url.path.startswith("/"):
            return PlainTextResponse(exc.message, status_code=exc.status)
        return page(request, "error.html", None, status=exc.status, status_code=exc.status,
                    message=exc.message)
