"""/api/v1/files: code archive uploads (raw .tar.gz body), content-addressed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from plinth.api.convert import file_out
from plinth.api.deps import Caller, Ctx
from plinth.api.schemas import FileOut
from plinth.services import files as svc
from plinth.services.auth import require_unscoped
from plinth.services.errors import Rejected, TooLarge

router = APIRouter(prefix="/api/v1/files", tags=["files"])


async def _read_capped(request: Request, cap: int) -> bytes:
    """The body, refusing (413) as soon as it exceeds `cap` bytes: never held unbounded."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > cap:
                raise TooLarge(
                    f"upload is {int(declared)} bytes, over this server's cap of {cap} bytes"
                )
        except ValueError:
            raise Rejected("Content-Length must be a number of bytes") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"upload is over this server's cap of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    status_code=201,
    response_model=FileOut,
    responses={
        200: {"model": FileOut, "description": "the same bytes were uploaded before"},
        400: {"description": "unsafe or unreadable archive; `detail` names the member"},
        413: {"description": "over the upload size cap"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_file(request: Request, response: Response, p: Caller, ctx: Ctx) -> FileOut:
    """Upload a gzip'd tar of a code directory. It is validated (no `..`, absolute paths,
    escaping links, devices; size, unpacked size and file count caps) before anything
    is stored; 201 when new, 200 when the same bytes were uploaded before."""
    require_unscoped(p)
    data = await _read_capped(request, ctx.cfg.uploads.max_packed)

    def store() -> tuple[FileOut, bool]:
        with ctx.db.session() as s:
            row, created = svc.store_file(s, p, ctx.home, data, ctx.cfg.uploads)
            return file_out(row), created

    out, created = await run_in_threadpool(store)
    response.status_code = 201 if created else 200
    return out


@router.get("/{sha256}", response_model=FileOut)
def get_file(sha256: Annotated[str, Path(max_length=64)], p: Caller, ctx: Ctx) -> FileOut:
    with ctx.db.read() as s:
        return file_out(svc.get_file(s, p, sha256))
