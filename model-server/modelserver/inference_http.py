"""The inference routes (`POST /v2/models/{name}[/versions/{version}]/infer` and `POST /predict`) as bare ASGI,
in front of the Starlette app that serves every other route.

Why bare: Starlette's middleware, router, Request and Response cost ~50 µs a request on this project's bench
machine (an echo route answers 11,100 req/s on one core through Starlette, 25,000 as bare ASGI), a fifth of a
1-row inference. These routes read one body and answer bytes; they need none of it. Every error is JSON,
`{"error": ...}`: a ServingError's with its status, a method other than POST 405, a bug 500 (and logged).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp

from modelserver.asgi import HEADER_LENGTH, ClientGone, Receive, Scope, Send, receive_body, send_whole
from modelserver.dataplane import DataPlane, V2Result
from modelserver.errors import (
    ClientClosed,
    InvalidInput,
    MalformedRequest,
    ModelNotFound,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)
from modelserver.metrics import PROTOCOL_PREDICT, PROTOCOL_V2
from modelserver.repository import Repository
from modelserver.tensors import binary_data, json_data

log = logging.getLogger(__name__)

JSON = b"application/json"
# The paths these routes document (modelserver.openapi), for the test that every route is documented.
PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer", "/predict")
_INTERNAL = orjson.dumps({"error": "internal server error"})
_NOT_ALLOWED = orjson.dumps({"error": "method not allowed: inference takes POST"})


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def json_reply(content: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY))


def error_reply(exc: ServingError) -> Reply:
    return json_reply({"error": exc.message}, exc.status)


class InferenceRoutes:
    """ASGI: the inference routes answered here, every other request (and the lifespan) passed to `other`."""

    def __init__(self, repository: Repository, max_body_bytes: int, other: ASGIApp) -> None:
        self.repository = repository
        self.max_body_bytes = max_body_bytes
        self.other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.other(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send(send, Reply(405, _NOT_ALLOWED, headers=[(b"allow", b"POST")]))
            return
        handler, name, version = route
        try:
            reply = await handler(self, scope, receive, name, version)
        except ClientClosed:
            return  # nobody to answer; the request is counted under the code 499
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            reply = Reply(500, _INTERNAL)
        await _send(send, reply)

    async def infer(self, scope: Scope, receive: Receive, name: str, version: str | None) -> Reply:
        try:
            plane = self.repository.get(name, version)
        except ServingError as exc:
            return error_reply(exc)
        try:
            with plane.observe(PROTOCOL_V2) as call:
                headers = _headers(scope)
                body = await read_body(receive, headers, self.max_body_bytes)
                call.body_received()
                header, binary = split_binary(body, headers.get(HEADER_LENGTH))
                parsed, x = plane.parse_v2(header, binary)
                return encode_v2(plane, await plane.infer_v2(parsed, x, call))
        except ClientClosed:
            raise
        except ServingError as exc:
            return error_reply(exc)

    async def predict(self, scope: Scope, receive: Receive, name: str, version: str | None) -> Reply:
        """`name` and `version` come from the query here (the path has none)."""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        try:
            plane = self._predict_plane(query)
        except ServingError as exc:
            return error_reply(exc)
        try:
            with plane.observe(PROTOCOL_PREDICT) as call:
                threshold = plane.check_threshold(query.get("threshold"))
                body = await read_body(receive, _headers(scope), self.max_body_bytes)
                call.body_received()
                x = plane.parse_records(body)
                return json_reply(await plane.predict_records(x, call, threshold))
        except ClientClosed:
            raise
        except ServingError as exc:
            return error_reply(exc)

    def _predict_plane(self, query: dict[str, str]) -> DataPlane:
        """/predict's model: `?model=NAME` (and `&version=`), or the one model served."""
        name = query.get("model")
        if name is not None:
            return self.repository.get(name, query.get("version"))
        plane = self.repository.only()
        if plane is None:
            served = ", ".join(sorted({p.name for p in self.repository.planes()}))
            if not served:
                raise ModelNotFound("no model is served here")
            raise InvalidInput(f"this server serves several models ({served}): name one, as /predict?model=NAME")
        return plane


Handler = Callable[[InferenceRoutes, Scope, Receive, str, str | None], Awaitable[Reply]]


def _route(scope: Scope) -> tuple[Handler, str, str | None] | None:
    """The handler and path parameters of an inference path (any method), else None. Names are matched as
    Starlette's `{name}` is: one non-empty segment of the decoded path."""
    path: str = scope["path"]
    if path.endswith("/") and len(path) > 1:
        path = path[:-1]  # as Starlette's redirect_slashes would have led the client to
    if path == "/predict":
        return InferenceRoutes.predict, "", None
    if not path.startswith("/v2/models/") or not path.endswith("/infer"):
        return None
    parts = path.split("/")  # "", "v2", "models", name, ["versions", version,] "infer"
    if len(parts) == 5 and parts[3]:
        return InferenceRoutes.infer, parts[3], None
    if len(parts) == 7 and parts[3] and parts[4] == "versions" and parts[5]:
        return InferenceRoutes.infer, parts[3], parts[5]
    return None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # ASGI servers give header names lowercased; a repeated header counts by its first value, as Starlette's get
    # and the router's reading take it.
    return dict(reversed(scope["headers"]))


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `limit` bytes."""
    encoding = headers.get(b"content-encoding", b"identity").strip().lower()
    if encoding not in {b"identity", b""}:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; send the body uncompressed"
        )
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body of {declared.decode()} bytes exceeds the limit of {limit} bytes")
    try:
        body = await receive_body(receive, limit)
    except ClientGone:
        raise ClientClosed("the client closed the connection before its body arrived") from None
    if body is None:
        raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
    return body


def split_binary(body: bytes, header_length: bytes | None) -> tuple[bytes, bytes]:
    """Split a binary-extension body into its JSON header and the raw tensor bytes after it."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        shown = header_length.decode("latin-1")
        raise MalformedRequest(f"Inference-Header-Content-Length {shown!r} does not fit the body")
    cut = int(header_length)
    return body[:cut], body[cut:]


def encode_v2(plane: DataPlane, result: V2Result) -> Reply:
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in result.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.binary:
            blob = binary_data(tensor.array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = json_data(tensor.array)
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": plane.name, "model_version": plane.version, "outputs": outputs}
    if result.request.id is not None:
        body["id"] = result.request.id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return Reply(200, header)
    length = str(len(header)).encode()
    return Reply(200, header + b"".join(blobs), b"application/octet-stream", [(HEADER_LENGTH, length)])


async def _send(send: Send, reply: Reply) -> None:
    await send_whole(send, reply.status, [(b"content-type", reply.content_type), *reply.headers], reply.body)
