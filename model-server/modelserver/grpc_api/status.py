"""What a gRPC caller is told when a request fails: the data plane's errors carry an HTTP status (what REST
answers), and each maps to the gRPC code of the same meaning (the mapping of google.rpc.Code to HTTP, read
backwards)."""

from __future__ import annotations

import grpc

from modelserver.errors import ServingError

_BY_HTTP_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    # Too many rows for one request: the caller fixes it by splitting the request, as for any other bad argument.
    # (A message over the size limit never reaches us: gRPC refuses it with RESOURCE_EXHAUSTED.)
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    # The repository cannot do it in its state (a model that does not fit the memory bound, or fails to load).
    409: grpc.StatusCode.FAILED_PRECONDITION,
    503: grpc.StatusCode.UNAVAILABLE,
}


def code_for(error: ServingError) -> grpc.StatusCode:
    """A caller's mistake (4xx) is never INTERNAL: only the model failing on valid input is (ModelFailed, 500)."""
    code = _BY_HTTP_STATUS.get(error.status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if error.status < 500 else grpc.StatusCode.INTERNAL
