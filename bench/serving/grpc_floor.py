"""The most a grpcio server answers on this machine: ModelInfer returning one prebuilt response, no work at all.

`make bench-serving`'s gRPC rows compare against it: what is left between our gRPC and this floor is ours; what
the floor itself costs is grpcio's. Two servers: `aio` (grpc.aio on uvloop, as `modelserver serve` runs gRPC) and
`sync` (grpcio's thread-pool server, 4 threads, the count that answered most here).

Usage: python -m bench.serving.grpc_floor aio|sync PORT
"""

from __future__ import annotations

import sys
from concurrent import futures
from typing import Any

import grpc
import uvloop

from modelserver.grpc_api import grpc_predict_v2_pb2 as pb
from modelserver.grpc_api import grpc_predict_v2_pb2_grpc as pb_grpc

ANSWER = pb.ModelInferResponse(model_name="logreg", model_version="1")
SYNC_THREADS = 4


class AsyncEmpty(pb_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return ANSWER


class SyncEmpty(pb_grpc.GRPCInferenceServiceServicer):
    def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return ANSWER


async def serve_aio(address: str) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(AsyncEmpty(), server)  # type: ignore[abstract]  # ModelInfer only
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def serve_sync(address: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SYNC_THREADS))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(SyncEmpty(), server)  # type: ignore[abstract]  # ModelInfer only
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    address = f"127.0.0.1:{port}"
    if kind == "aio":
        uvloop.run(serve_aio(address))
    elif kind == "sync":
        serve_sync(address)
    else:
        raise SystemExit(f"unknown server {kind!r}: aio or sync")


if __name__ == "__main__":
    main()
