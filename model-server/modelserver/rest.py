"""REST transport: Open Inference Protocol v2 (tritonclient-compatible, binary tensor extension included),
the simple `POST /predict`, `/metrics` and the OpenAPI document. All model logic lives in the data plane; the
inference routes themselves are bare ASGI (modelserver.inference_http), every other route is Starlette's."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelserver import __version__
from modelserver.dataplane import SERVER_NAME, DataPlane
from modelserver.errors import ServingError
from modelserver.inference_http import InferenceRoutes
from modelserver.metrics import render
from modelserver.openapi import openapi_document
from modelserver.repository import Repository, source_for
from modelserver.settings import ServerSettings

log = logging.getLogger(__name__)

# The CLI resolves settings once (flags over environment, remote URI already fetched) and passes them to
# every worker process through this variable.
RESOLVED_SETTINGS_ENV = "MODELSERVER__RESOLVED"
JSON = "application/json"


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type=JSON)


def _error(exc: ServingError) -> Response:
    return _json({"error": exc.message}, exc.status)


class Handlers:
    """Route handlers over the models of the repository that the lifespan loads (the server answers only once it
    has loaded them)."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    def _plane(self, request: Request) -> DataPlane:
        """The model of the request's path; ModelNotFound when it is not served."""
        params = request.path_params
        return self.repository.get(params["name"], params.get("version"))

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.repository.ready
        return _json({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        extensions = ["binary_tensor_data", "model_repository"]
        return _json({"name": SERVER_NAME, "version": __version__, "extensions": extensions})

    async def model_metadata(self, request: Request) -> Response:
        try:
            return _json(self._plane(request).metadata())
        except ServingError as exc:
            return _error(exc)

    async def model_ready(self, request: Request) -> Response:
        try:
            plane = self._plane(request)
        except ServingError as exc:
            return _error(exc)
        return _json({"name": plane.name, "ready": plane.ready}, 200 if plane.ready else 503)

    # --- the repository extension ---------------------------------------------------------------------------

    async def repository_index(self, request: Request) -> Response:
        return _json(await self.repository.index())

    async def repository_load(self, request: Request) -> Response:
        try:
            await self.repository.load(request.path_params["name"])
        except ServingError as exc:
            return _error(exc)
        return _json({})

    async def repository_unload(self, request: Request) -> Response:
        try:
            await self.repository.unload(request.path_params["name"])
        except ServingError as exc:
            return _error(exc)
        return _json({})

    async def metrics(self, request: Request) -> Response:
        content, content_type = render()
        return Response(content, media_type=content_type)

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document())


def create_app(settings: ServerSettings) -> InferenceRoutes:
    """The inference routes (modelserver.inference_http) in front of a Starlette app with every other route."""
    repository = Repository(settings, source_for(settings))
    handlers = Handlers(repository)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            if repository.source is None:
                await repository.start_single(warmup=settings.warmup)
            else:
                await repository.start_all()
        except Exception as exc:
            if repository.source is None:
                log.error("model %s version %s cannot be served: %s", settings.model_name, settings.model_version, exc)
            else:
                log.error("the model repository cannot be served: %s", exc)
            raise
        grpc_server = await _start_grpc(repository, settings) if settings.grpc else None
        # Everything allocated so far (libraries, the model) lives until exit. Freezing it keeps the cyclic
        # GC from rescanning it in full collections, which otherwise pause requests for tens of ms.
        gc.collect()
        gc.freeze()
        for plane in repository.planes():
            log.info(
                "serving model",
                extra={
                    "model": plane.name,
                    "version": plane.version,
                    "format": plane.platform,
                    "features": plane.signature.n_features,
                    "task": plane.signature.task,
                    "batching": settings.batching,
                },
            )
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(settings.graceful_timeout_s)
            await repository.stop()

    h = handlers
    routes = [
        Route("/v2/health/live", h.live, methods=["GET"]),
        Route("/v2/health/ready", h.ready, methods=["GET"]),
        Route("/v2", h.server_metadata, methods=["GET"]),
        Route("/v2/models/{name}", h.model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", h.model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", h.model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", h.model_ready, methods=["GET"]),
        Route("/v2/repository/index", h.repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", h.repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", h.repository_unload, methods=["POST"]),
        Route("/metrics", h.metrics, methods=["GET"]),
        Route("/openapi.json", h.openapi, methods=["GET"]),
    ]
    return InferenceRoutes(repository, settings.max_body_bytes, Starlette(routes=routes, lifespan=lifespan))


async def _start_grpc(repository: Repository, settings: ServerSettings) -> Any:
    """gRPC beside REST in this worker, on the same data plane (modelserver.grpc_api); raises when it cannot
    listen, which fails the worker's start-up like a model that does not load."""
    # Imported here: with gRPC off, REST does not need the generated message modules (`make venv` writes them).
    from modelserver.grpc_api.service import start_server  # noqa: PLC0415

    try:
        return await start_server(repository, settings)
    except Exception as exc:
        log.error("gRPC cannot be served: %s", exc)
        raise


def app_from_environment() -> InferenceRoutes:
    """uvicorn's app factory in each worker: the CLI's resolved settings, else MODELSERVER_* variables."""
    resolved = os.environ.get(RESOLVED_SETTINGS_ENV)
    settings = ServerSettings.model_validate_json(resolved) if resolved else ServerSettings()
    return create_app(settings)
