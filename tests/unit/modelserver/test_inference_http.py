"""The bare-ASGI inference routes: path matching, the answers outside the data plane (405, 500, a client that
left), and that what they count is what the data plane's other callers count. The answers to valid and invalid
requests over real HTTP are tested in tests/integration/modelserver."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from modelserver.asgi import Message
from modelserver.dataplane import DataPlane
from modelserver.errors import ModelNotFound
from modelserver.inference_http import InferenceRoutes, _route
from tests.unit.modelserver import builders
from tests.unit.modelserver.conftest import make_plane


class OneModel:
    """The part of Repository the routes use, over one data plane."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def get(self, name: str, version: str | None = None) -> DataPlane:
        if name != self.plane.name or version not in (None, self.plane.version):
            raise ModelNotFound(f"model {name!r} is not served here")
        return self.plane

    def only(self) -> DataPlane:
        return self.plane

    def planes(self) -> list[DataPlane]:
        return [self.plane]


class Other:
    """The app behind the routes: records that it was called."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope.get("path", scope["type"]))


@pytest.fixture
def plane(logistic: builders.Built) -> DataPlane:
    return make_plane(logistic.path, name=f"m{uuid.uuid4().hex[:8]}")


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers or []}


async def call(app: InferenceRoutes, scope: dict[str, Any], *messages: Message) -> list[Message]:
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def requests(plane: DataPlane, code: str) -> float:
    labels = {"model": plane.name, "version": plane.version, "protocol": "v2", "code": code}
    return REGISTRY.get_sample_value("modelserver_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/churn/infer", ("infer", "churn", None)),
        ("/v2/models/churn/versions/7/infer", ("infer", "churn", "7")),
        ("/predict", ("predict", "", None)),
        ("/v2/models//infer", None),
        ("/v2/models/a/b/infer", None),
        ("/v2/models/churn/versions//infer", None),
        ("/v2/models/churn/ready", None),
        ("/v2/models/churn/infer/", ("infer", "churn", None)),  # Starlette redirected these to the route
        ("/predict/", ("predict", "", None)),
        ("/v2/models/churn/infer//", None),
        ("/metrics", None),
    ],
)
def test_only_the_inference_paths_are_taken(path: str, expected: tuple[str, str, str | None] | None) -> None:
    route = _route(scope("POST", path))
    assert (None if route is None else (route[0].__name__, route[1], route[2])) == expected


async def test_every_other_request_and_the_lifespan_go_to_the_app_behind(plane: DataPlane) -> None:
    other = Other()
    app = InferenceRoutes(OneModel(plane), 1000, other)  # type: ignore[arg-type]
    await call(app, scope("GET", "/metrics"))
    await call(app, {"type": "lifespan"})
    assert other.paths == ["/metrics", "lifespan"]


async def test_another_method_on_an_inference_path_is_refused_with_405(plane: DataPlane) -> None:
    app = InferenceRoutes(OneModel(plane), 1000, Other())  # type: ignore[arg-type]
    start, body = await call(app, scope("GET", f"/v2/models/{plane.name}/infer"))
    assert start["status"] == 405
    assert (b"allow", b"POST") in start["headers"]
    assert "POST" in json.loads(body["body"])["error"]


async def test_an_answer_carries_its_length_and_type(plane: DataPlane, logistic: builders.Built) -> None:
    app = InferenceRoutes(OneModel(plane), 100_000, Other())  # type: ignore[arg-type]
    row = logistic.x[:1].tolist()
    request = json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(row[0])], "datatype": "FP64", "data": row}]})
    chunks = [request.encode()[:10], request.encode()[10:]]  # a body in two messages
    start, body = await call(
        app,
        scope("POST", f"/v2/models/{plane.name}/infer"),
        {"type": "http.request", "body": chunks[0], "more_body": True},
        {"type": "http.request", "body": chunks[1], "more_body": False},
    )
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"])["outputs"][0]["data"] == logistic.estimator.predict(logistic.x[:1]).tolist()
    assert requests(plane, "200") == 1


async def test_a_client_that_leaves_before_its_body_gets_no_answer_and_counts_as_499(plane: DataPlane) -> None:
    app = InferenceRoutes(OneModel(plane), 1000, Other())  # type: ignore[arg-type]
    sent = await call(
        app,
        scope("POST", f"/v2/models/{plane.name}/infer"),
        {"type": "http.request", "body": b'{"inp', "more_body": True},
        {"type": "http.disconnect"},
    )
    assert sent == []
    assert requests(plane, "499") == 1
    assert requests(plane, "500") == 0


async def test_a_body_over_the_limit_is_refused_413(plane: DataPlane) -> None:
    app = InferenceRoutes(OneModel(plane), 10, Other())  # type: ignore[arg-type]
    declared = scope("POST", f"/v2/models/{plane.name}/infer", [(b"content-length", b"11")])
    start, _ = await call(app, declared)  # refused on its Content-Length, before any of it is read
    assert start["status"] == 413
    undeclared = scope("POST", f"/v2/models/{plane.name}/infer")
    parts = [{"type": "http.request", "body": b"x" * 6, "more_body": True}] * 2
    start, _ = await call(app, undeclared, *parts)
    assert start["status"] == 413
    assert requests(plane, "413") == 2


async def test_a_bug_answers_500_is_logged_and_counted(
    plane: DataPlane, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(header: bytes, binary: bytes = b"") -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(plane, "parse_v2", broken)
    app = InferenceRoutes(OneModel(plane), 1000, Other())  # type: ignore[arg-type]
    start, body = await call(
        app, scope("POST", f"/v2/models/{plane.name}/infer"), {"type": "http.request", "body": b"{}"}
    )
    assert start["status"] == 500
    assert json.loads(body["body"]) == {"error": "internal server error"}
    assert "a bug" in caplog.text
    assert requests(plane, "500") == 1


async def test_a_repeated_header_counts_by_its_first_value(plane: DataPlane) -> None:
    app = InferenceRoutes(OneModel(plane), 1000, Other())  # type: ignore[arg-type]
    encodings = [(b"content-encoding", b"gzip"), (b"content-encoding", b"identity")]
    request = scope("POST", f"/v2/models/{plane.name}/infer", encodings)
    start, _ = await call(app, request, {"type": "http.request", "body": b"{}"})
    assert start["status"] == 415


async def test_an_unknown_model_is_404_naming_it(plane: DataPlane) -> None:
    app = InferenceRoutes(OneModel(plane), 1000, Other())  # type: ignore[arg-type]
    start, body = await call(app, scope("POST", "/v2/models/nope/infer"), {"type": "http.request", "body": b"{}"})
    assert start["status"] == 404
    assert "nope" in json.loads(body["body"])["error"]
