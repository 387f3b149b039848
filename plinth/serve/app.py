"""The serving HTTP app: Open Inference Protocol v2, ``/predict``, ``/metrics``, control.

Routes (every error is ``{"error": "<what to fix>"}`` with a 4xx, or 503 when busy):

- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``;
- ``GET /v2/models/{name}`` (metadata), ``GET /v2/models/{name}/ready``,
  ``POST /v2/models/{name}[/versions/{v}]/infer`` (see :mod:`plinth.serve.protocol`);
- ``POST /predict``: a list of raw feature dicts -> ``{"predictions": [...], "model",
  "version", "delta_seq"}``;
- ``GET /metrics`` (Prometheus);
- control, for the platform (``Authorization: Bearer <control token>`` when the server was
  given one): ``POST /control/version {"path", "version"}`` loads and swaps in a version,
  ``POST /control/delta {"path", "seq"?, "version"?}`` applies a delta (refused, 409, when
  it is out of order or continues another version than the one served); both answer when
  the swap is done.

Requests go through one :class:`~plinth.serve.batcher.Batcher`; a full queue answers 503
with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

import plinth
from plinth.api.limits import BodyLimit, _too_large
from plinth.serve.batcher import Batcher, BatchTooLarge, QueueFull
from plinth.serve.host import (
    DeltaOutOfOrder,
    InvalidRecords,
    ModelHost,
    PackageError,
    Prediction,
)
from plinth.serve.metrics import ServeMetrics
from plinth.serve.protocol import (
    BadRequest,
    Columns,
    columns_from_infer,
    columns_from_predict,
    infer_response,
    parse_infer_body,
    parse_json,
    predict_response,
)

__all__ = ["BatchSettings", "ScoringLane", "create_app"]


@dataclass(frozen=True)
class BatchSettings:
    """The batcher's knobs: rows per batch, queue delay (seconds), queue bound (rows)."""

    max_batch_rows: int = 1024
    max_delay_s: float = 0.0
    max_queue_rows: int = 16384
    max_body_bytes: int = 16 * 1024 * 1024


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _json_body(request: Request) -> Any:
    try:
        return parse_json(await request.body())
    except BadRequest as e:
        raise _Refused(400, str(e)) from None


def create_app(host: ModelHost, settings: BatchSettings = BatchSettings(),
               control_token: str | None = None) -> ScoringLane:
    """The app serving ``host`` (the FastAPI app behind its :class:`ScoringLane`); the
    batcher starts with the app and drains at shutdown."""
    metrics = ServeMetrics()
    batcher = Batcher(host.predict, settings.max_batch_rows, settings.max_delay_s,
                      settings.max_queue_rows, on_batch=metrics.on_batch)
    metrics.watch(host, batcher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(batcher.close)

    app = FastAPI(title="Plinth model server", version=plinth.__version__, lifespan=lifespan)
    app.state.host, app.state.batcher, app.state.metrics = host, batcher, metrics
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: _Refused) -> JSONResponse:
        return _error(exc.status, str(exc), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    def check_model(name: str, version: str | None = None) -> None:
        if name != host.name:
            raise _Refused(404, f"unknown model {name!r}; this server serves {host.name!r}")
        if version is not None and version != host.version:
            raise _Refused(404, f"model {name!r} has no version {version!r} loaded; it serves "
                                f"version {host.version!r}")

    async def score(columns: Columns) -> Prediction:
        try:
            fut = batcher.submit_async(columns, columns.rows)
        except BatchTooLarge as e:
            raise _Refused(413, str(e)) from None
        except QueueFull as e:
            raise _Refused(503, str(e), {"Retry-After": str(e.retry_after_s)}) from None
        try:
            return await fut
        except InvalidRecords as e:
            raise _Refused(422, str(e)) from None

    async def timed(endpoint: str, handle: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        code = 200
        try:
            return await handle()
        except _Refused as e:
            code = e.status
            raise
        except BaseException:
            code = 500
            raise
        finally:
            metrics.requests.labels(endpoint, str(code)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict:
        return {"ready": True}  # the host exists only once a version is loaded and warm

    @app.get("/v2")
    async def server_metadata() -> dict:
        return {"name": "plinth", "version": plinth.__version__, "extensions": []}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict:
        check_model(name, version)
        schema = host.schema
        inputs = [{"name": f.name, "datatype": "BYTES" if f.multi else "INT64", "shape": [-1]}
                  for f in schema.categorical]
        inputs += [{"name": f.name, "datatype": "FP32", "shape": [-1]} for f in schema.numeric]
        return {"name": host.name, "versions": [host.version], "platform": "plinth",
                "inputs": inputs,
                "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1]}],
                "parameters": {"delta_seq": host.delta_seq}}

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> dict:
        check_model(name)
        return {"name": name, "ready": True}

    async def infer_body(name: str, version: str | None, raw: bytes) -> bytes:
        check_model(name, version)
        try:
            columns, req_id = columns_from_infer(host.schema, parse_infer_body(raw))
        except BadRequest as e:
            raise _Refused(400, str(e)) from None
        p = await score(columns)
        return msgspec.json.encode(infer_response(
            host.name, p.version, p.probabilities.tolist(), req_id, {"delta_seq": p.delta_seq}))

    async def predict_body(raw: bytes) -> bytes:
        try:
            columns = columns_from_predict(host.schema, raw)
        except BadRequest as e:
            raise _Refused(400, str(e)) from None
        p = await score(columns)
        return predict_response(host.name, p.version, p.probabilities, p.delta_seq)

    # The scoring routes, for the app alone (its OpenAPI page, an in-process client); served
    # by uvicorn, the lane below answers them first with the same functions.
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        async def handle() -> Response:
            body = await infer_body(name, version, await request.body())
            return Response(body, media_type="application/json")
        return await timed("infer", handle)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        async def handle() -> Response:
            body = await predict_body(await request.body())
            return Response(body, media_type="application/json")
        return await timed("predict", handle)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def check_control(request: Request) -> None:
        if control_token is None:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {control_token}".encode()):
            raise _Refused(401, "control calls need 'Authorization: Bearer <control token>'")

    @app.post("/control/version")
    async def control_version(request: Request) -> dict:
        check_control(request)
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("path"), str) \
                or not isinstance(body.get("version"), str | int):
            raise _Refused(400, 'the body must be {"path": "<package dir>", "version": "<v>"}')
        try:
            await asyncio.to_thread(host.load_version, body["path"], str(body["version"]))
        except PackageError as e:
            raise _Refused(422, str(e)) from None
        return host.describe()

    @app.post("/control/delta")
    async def control_delta(request: Request) -> dict:
        check_control(request)
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("path"), str) \
                or not isinstance(body.get("seq", 0), int):
            raise _Refused(400, 'the body must be {"path": "<delta dir>", "seq": <n>, '
                                '"version": "<the version it continues>"}')
        if "version" in body and str(body["version"]) != host.version:
            raise _Refused(409, f"the delta continues version {body['version']!r}, but this "
                                f"server serves version {host.version!r}; nothing applied")
        try:
            await asyncio.to_thread(host.apply_delta, body["path"], body.get("seq"))
        except PackageError as e:
            raise _Refused(409 if isinstance(e, DeltaOutOfOrder) else 422, str(e)) from None
        return host.describe()

    def scoring_route(path: str) -> tuple[str, Callable[[bytes], Awaitable[bytes]]] | None:
        if path == "/predict":
            return "predict", predict_body
        parts = path.split("/")  # "", "v2", "models", name, ["versions", v,] "infer"
        if len(parts) in (5, 7) and parts[:3] == ["", "v2", "models"] and parts[-1] == "infer" \
                and parts[3] and (len(parts) == 5 or (parts[4] == "versions" and parts[5])):
            name, version = parts[3], (parts[5] if len(parts) == 7 else None)
            return "infer", lambda raw: infer_body(name, version, raw)
        return None

    return ScoringLane(app, scoring_route, timed, settings.max_body_bytes)


Route = Callable[[str], "tuple[str, Callable[[bytes], Awaitable[bytes]]] | None"]


class ScoringLane:
    """The served ASGI app: ``POST /predict`` and ``POST /v2/models/{name}[/versions/{v}]
    /infer`` are answered here, by the same functions as the FastAPI routes, without
    FastAPI's middleware, routing and request objects (measured ~0.1 ms of a ~0.6 ms
    ranking request); everything else - other routes, other methods, the lifespan - goes
    to :attr:`app`. Answers as the app does: the body limit (413), ``{"error": ...}``
    with the refusal's status and headers, the request metrics."""

    def __init__(self, app: FastAPI, route: Route, timed: Callable[..., Awaitable[Any]],
                 max_body_bytes: int) -> None:
        self.app, self._route, self._timed, self._limit = app, route, timed, max_body_bytes

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        hit = (self._route(scope["path"])
               if scope["type"] == "http" and scope["method"] == "POST" else None)
        if hit is None:
            await self.app(scope, receive, send)
            return
        endpoint, answer = hit
        try:
            raw = await self._body(scope, receive)
            if raw is None:
                return  # the client went away
            body = await self._timed(endpoint, lambda: answer(raw))
        except _Refused as e:
            await _send(send, e.status, json.dumps({"error": str(e)}).encode(), e.headers)
            return
        except Exception:  # counted as a 500 by timed; the log says why
            logging.getLogger("plinth.serve").exception("%s failed", endpoint)
            await _send(send, 500, b'{"error": "internal error while scoring; the server '
                                   b'log says why"}')
            return
        await _send(send, 200, body)

    async def _body(self, scope: dict, receive: Callable) -> bytes | None:
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > self._limit:
                raise _Refused(413, _too_large(self._limit))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise _Refused(413, _too_large(self._limit))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _send(send: Callable, status: int, body: bytes,
                headers: dict[str, str] | None = None) -> None:
    head = [(b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
