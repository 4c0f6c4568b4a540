"""The HTTP routes: the Open Inference Protocol (KServe v2) REST API as Triton serves it, `POST /predict`, `/metrics`.

    GET  /v2/health/live, /v2/health/ready          200, or 503 while stopping
    GET  /v2                                        server metadata (extensions: binary_tensor_data)
    GET  /v2/models/{name}[/versions/1]             model metadata: inputs and outputs, -1 for open axes
    GET  /v2/models/{name}[/versions/1]/ready       200, or 404 for a model not served
    GET  /v2/models/{name}[/versions/1]/config      Triton's model configuration (max_batch_size, dynamic_batching)
    POST /v2/models/{name}[/versions/1]/infer       inference, JSON or binary tensors
    POST /predict                                   {"rows": [{column: value}]} -> {"rows": [the CSV's columns]}
    GET  /metrics                                   Prometheus text

A request is read on the event loop, then parsed and decoded on a decoding thread, queued for the
model (predict.serve.batcher), and its outputs post-processed and encoded on a decoding thread
again: the event loop only moves bytes, and decoding runs while the model runs. Errors are
`{"error": "..."}` with a 4xx/5xx status; a bad request never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from predict import __version__
from predict.serve.batcher import Batcher
from predict.serve.metrics import ServerMetrics
from predict.serve.models import RawModel, TaskModel
from predict.serve.protocol import RequestError

log = logging.getLogger("predict.serve")
# A body over the size limit is read on and dropped up to this many times the limit, then the connection closes.
DRAIN_FACTOR = 4


@dataclass
class ServerState:
    """What the routes share: the models, the batcher, the decoding threads and the limits."""

    task_model: TaskModel
    raw_model: RawModel
    batcher: Batcher
    metrics: ServerMetrics
    decoding: ThreadPoolExecutor
    request_timeout_seconds: float
    max_request_bytes: int
    config: dict[str, Any]  # serve.* as Triton's model configuration names them
    stopping: bool = False
    models: dict[str, TaskModel | RawModel] = field(init=False)

    def __post_init__(self) -> None:
        self.models = {self.task_model.name: self.task_model, self.raw_model.name: self.raw_model}


def build_app(state: ServerState) -> Starlette:
    """The ASGI app of a loaded, warmed-up server."""
    routes = Routes(state)
    paths = []
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        paths += [
            Route(prefix, routes.model_metadata),
            Route(prefix + "/ready", routes.model_ready),
            Route(prefix + "/config", routes.model_config),
            Route(prefix + "/infer", routes.infer, methods=["POST"]),
        ]
    paths += [
        Route("/v2/health/live", routes.live),
        Route("/v2/health/ready", routes.ready),
        Route("/v2", routes.server_metadata),
        Route("/predict", routes.predict, methods=["POST"]),
        Route("/metrics", routes.metrics),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state.batcher.start()
        yield
        await state.batcher.stop()  # every queued request answered first
        state.decoding.shutdown(wait=True)

    app = Starlette(routes=paths, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.add_middleware(RequestLog)
    return app


class Routes:
    """The route handlers, over one `ServerState`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=503 if self.state.stopping else 200)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "predict", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request: Request) -> Response:
        try:
            return JSONResponse(self._model(request).metadata())
        except RequestError as error:
            return error_response(error)

    async def model_ready(self, request: Request) -> Response:
        try:
            self._model(request)
        except RequestError as error:
            return error_response(error)
        return Response(status_code=503 if self.state.stopping else 200)

    async def model_config(self, request: Request) -> Response:
        try:
            model = self._model(request)
        except RequestError as error:
            return error_response(error)
        return JSONResponse(triton_config(model, self.state.config))

    async def metrics(self, request: Request) -> Response:
        return Response(self.state.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    async def infer(self, request: Request) -> Response:
        """`POST /v2/models/{name}/infer`: parse and decode, queue for the model, post-process and encode."""
        started = time.perf_counter()
        label, status = "unknown", 500
        try:
            model = self._model(request)
            label = model.name
            body = await self._body(request)
            header_length = request.headers.get("inference-header-content-length")
            prepared = await self._decoding(model.prepare, body, header_length)
            request.state.rows = prepared.rows
            outputs = await self.state.batcher.score(prepared.inputs, rows=prepared.rows, timeout=self._left(started))
            content, headers = await self._decoding(model.respond, prepared, outputs)
            status = 200
            return Response(content, headers=headers)
        except RequestError as error:
            status = error.status
            return error_response(error)
        except Exception as error:  # a bug or a model failure: this request fails, the server goes on
            log.exception("inference failed")
            return error_response(RequestError(500, f"internal error: {type(error).__name__}: {error}"))
        finally:
            self.state.metrics.observe_request(label, status, time.perf_counter() - started)

    async def predict(self, request: Request) -> Response:
        """`POST /predict`: `{"rows": [...]}` through the task model, answered with the CSV's columns per row."""
        started = time.perf_counter()
        model = self.state.task_model
        status = 500
        try:
            body = await self._body(request)
            prepared = await self._decoding(model.prepare_rows, body)
            request.state.rows = prepared.rows
            outputs = await self.state.batcher.score(prepared.inputs, rows=prepared.rows, timeout=self._left(started))
            rows = await self._decoding(model.csv_rows, prepared, outputs)
            status = 200
            return JSONResponse({"rows": rows})
        except RequestError as error:
            status = error.status
            return error_response(error)
        except Exception as error:  # a bug or a model failure: this request fails, the server goes on
            log.exception("prediction failed")
            return error_response(RequestError(500, f"internal error: {type(error).__name__}: {error}"))
        finally:
            self.state.metrics.observe_request(model.name, status, time.perf_counter() - started)

    def _model(self, request: Request) -> TaskModel | RawModel:
        name = request.path_params["model"]
        version = request.path_params.get("version")
        model = self.state.models.get(name)
        if model is None:
            raise RequestError(404, f"unknown model '{name}'; this server serves {', '.join(self.state.models)}")
        if version not in (None, "", "1"):
            raise RequestError(404, f"model '{name}' has version 1 only (got version '{version}')")
        return model

    async def _body(self, request: Request) -> bytes:
        """The request body, refused (413) beyond `serve.max_request_bytes`: the rest is read and dropped (up to
        DRAIN_FACTOR times the limit), never kept, so that a client still sending reads the 413, not a broken pipe."""
        limit = self.state.max_request_bytes
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise RequestError(400, f"Content-Encoding {encoding} is not supported: send the body uncompressed")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif size > DRAIN_FACTOR * limit:
                break
        if size > limit:
            raise RequestError(413, f"the request body is larger than serve.max_request_bytes ({limit} bytes)")
        return b"".join(chunks)

    async def _decoding(self, function: Callable, *arguments: Any) -> Any:
        """`function(*arguments)` on a decoding thread."""
        call = functools.partial(function, *arguments)
        return await asyncio.get_running_loop().run_in_executor(self.state.decoding, call)

    def _left(self, started: float) -> float:
        """Seconds left of the request's `serve.request_timeout_seconds`.

        Raises:
            RequestError: 504 none are left.
        """
        left = self.state.request_timeout_seconds - (time.perf_counter() - started)
        if left <= 0:
            raise RequestError(
                504, f"no answer within serve.request_timeout_seconds ({self.state.request_timeout_seconds:g} s)"
            )
        return left


def error_response(error: RequestError) -> JSONResponse:
    """`{"error": message}` with the error's status."""
    return JSONResponse({"error": error.message}, status_code=error.status)


async def _http_error(request: Request, error: HTTPException) -> Response:
    """Starlette's own errors (no such route, wrong method) in the protocol's shape."""
    message = f"{request.method} {request.url.path}: {error.detail}"
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


def triton_config(model: TaskModel | RawModel, serve: dict[str, Any]) -> dict[str, Any]:
    """Triton's model configuration (`GET .../config`), as far as it applies: inputs and outputs without the
    batch axis, `max_batch_size` and `dynamic_batching`."""

    def tensors(infos: dict) -> list[dict[str, Any]]:
        return [
            {
                "name": info.name,
                "data_type": f"TYPE_{'STRING' if info.datatype == 'BYTES' else info.datatype}",
                "dims": list(info.shape[1:]) or [1],
            }
            for info in infos.values()
        ]

    return {
        "name": model.name,
        "platform": model.metadata()["platform"],
        "max_batch_size": serve["max_batch_size"],
        "input": tensors(model.inputs),
        "output": tensors(model.output_infos()),
        "dynamic_batching": {
            "max_queue_delay_microseconds": serve["max_queue_delay_microseconds"],
            "default_queue_policy": {
                "max_queue_size": serve["max_queue_size"],
                "default_timeout_microseconds": int(serve["request_timeout_seconds"] * 1_000_000),
            },
        },
    }


class RequestLog:
    """One info line per request: client, method, path, status, milliseconds and rows (ASGI middleware)."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            client = scope.get("client") or ("-", 0)
            rows = (scope.get("state") or {}).get("rows")
            milliseconds = (time.perf_counter() - started) * 1000
            log.info(
                "%s:%s %s %s %d %.1f ms%s",
                client[0],
                client[1],
                scope["method"],
                scope["path"],
                status,
                milliseconds,
                f" rows={rows}" if rows is not None else "",
            )
