"""The gRPC servicer over the data plane, and its server's life cycle inside a `modelserver serve` worker.

Each worker runs one grpc.aio server on its own event loop (the one uvicorn serves REST on), over the same
Repository: per model, one data plane, one batcher, one set of metrics for both protocols. With several workers
each binds the port with SO_REUSEPORT and the kernel spreads connections over them, as uvicorn's workers share
REST's socket.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import grpc

from modelserver import __version__
from modelserver.dataplane import SERVER_NAME, DataPlane
from modelserver.errors import ServingError
from modelserver.grpc_api import convert
from modelserver.grpc_api import grpc_predict_v2_pb2 as pb
from modelserver.grpc_api import grpc_predict_v2_pb2_grpc as pb_grpc
from modelserver.grpc_api import model_repository_pb2 as repo_pb
from modelserver.grpc_api.status import code_for
from modelserver.metrics import PROTOCOL_GRPC
from modelserver.repository import READY, Repository
from modelserver.settings import ServerSettings

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = "inference.GRPCInferenceService"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.repository.ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        plane = await self._plane(context, request.name, request.version)
        return pb.ModelReadyResponse(ready=plane.ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        plane = await self._plane(context, request.name, request.version)
        return convert.model_metadata(plane.metadata())

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        plane = await self._plane(context, request.model_name, request.model_version)
        try:
            # The message arrived whole before this handler ran: the call is timed from here, as REST's is from
            # its body received.
            with plane.observe(PROTOCOL_GRPC) as call:
                parsed, values = convert.infer_request(request)
                result = await plane.infer_v2(parsed, plane.v2_rows(parsed, values), call)
                return convert.infer_response(plane.name, plane.version, result)
        except ServingError as exc:
            await context.abort(code_for(exc), exc.message)
        except Exception as exc:
            # observe() counted it (code 500, reason internal); without this the caller would read UNKNOWN.
            log.exception("gRPC ModelInfer failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    async def _plane(self, context: Context, name: str, version: str) -> DataPlane:
        """The model asked for; the call is aborted (NOT_FOUND) when it is not served."""
        try:
            return self.repository.get(name, version or None)
        except ServingError as exc:
            await context.abort(code_for(exc), exc.message)
            raise  # unreachable: abort raises


class RepositoryServicer:
    """The repository extension (Triton's RPCs of inference.GRPCInferenceService): REST's index, load and unload."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    async def RepositoryIndex(
        self, request: repo_pb.RepositoryIndexRequest, context: Context
    ) -> repo_pb.RepositoryIndexResponse:
        rows = await self.repository.index()
        models = [repo_pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows
                  if not request.ready or row["state"] == READY]  # fmt: skip
        return repo_pb.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(
        self, request: repo_pb.RepositoryModelLoadRequest, context: Context
    ) -> repo_pb.RepositoryModelLoadResponse:
        await _answered(context, self.repository.load(request.model_name))
        return repo_pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: repo_pb.RepositoryModelUnloadRequest, context: Context
    ) -> repo_pb.RepositoryModelUnloadResponse:
        await _answered(context, self.repository.unload(request.model_name))
        return repo_pb.RepositoryModelUnloadResponse()


async def _answered(context: Context, change: Awaitable[Any]) -> None:
    """Await a repository change; the call is aborted with the code of its ServingError, if any."""
    try:
        await change
    except ServingError as exc:
        await context.abort(code_for(exc), exc.message)


def repository_handler(servicer: RepositoryServicer) -> grpc.GenericRpcHandler:
    """The three RPCs under KServe's service name, beside the generated servicer's (a call names its method only)."""
    rpcs: dict[str, tuple[Any, Any]] = {
        "RepositoryIndex": (repo_pb.RepositoryIndexRequest, servicer.RepositoryIndex),
        "RepositoryModelLoad": (repo_pb.RepositoryModelLoadRequest, servicer.RepositoryModelLoad),
        "RepositoryModelUnload": (repo_pb.RepositoryModelUnloadRequest, servicer.RepositoryModelUnload),
    }
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        name: grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=message.FromString, response_serializer=lambda reply: reply.SerializeToString()
        )
        for name, (message, method) in rpcs.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_server(repository: Repository, settings: ServerSettings) -> grpc.aio.Server:
    """Listening and serving once this returns; raises RuntimeError when the port cannot be bound."""
    limit = settings.grpc_max_message_bytes
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # One worker owns its port: a second server on it must fail to start, not share its connections.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(repository), server)
    server.add_generic_rpc_handlers((repository_handler(RepositoryServicer(repository)),))
    where = address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError as exc:
        raise RuntimeError(f"gRPC cannot listen on {where}: {exc}") from None
    await server.start()
    log.info("serving gRPC on %s", where, extra={"address": where})
    return server
