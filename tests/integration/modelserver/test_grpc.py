"""gRPC beside REST in one real `modelserver serve` process: tritonclient.grpc against a scikit-learn model trained
on the spot answers what REST answers, is refused as REST refuses, and is counted as protocol="grpc"."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families
from testkit.models import Classifiers, train_classifiers
from tritonclient.utils import InferenceServerException

from tests.integration.modelserver.conftest import Server, StartServer

pytestmark = pytest.mark.integration

MODEL, VERSION = "churn", "3"


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory: pytest.TempPathFactory) -> Classifiers:
    return train_classifiers(tmp_path_factory.mktemp("models"))


@pytest.fixture
def grpc_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    clients: list[Any] = []

    def connect(server: Server) -> Any:
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def serve(start_server: StartServer, classifiers: Classifiers, *args: str, ready: bool = True) -> Server:
    uri = str(classifiers.stable.path)
    return start_server("--model-uri", uri, "--model-name", MODEL, "--model-version", VERSION, *args, ready=ready)


def grpc_input(x: np.ndarray[Any, Any], datatype: str = "FP64") -> Any:
    tensor = triton_grpc.InferInput("input-0", list(x.shape), datatype)
    tensor.set_data_from_numpy(x.astype(triton_grpc.triton_to_np_dtype(datatype)))
    return tensor


@pytest.mark.parametrize("workers", [1, 2])
def test_grpc_answers_the_numbers_rest_answers(
    start_server: StartServer, classifiers: Classifiers, grpc_client: Any, workers: int
) -> None:
    server = serve(start_server, classifiers, "--workers", str(workers))
    rows = classifiers.dataset.rows
    client = grpc_client(server)
    rest = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        # Single rows (the latency case) and a block; several calls so both workers' servers answer some.
        for x in [rows[i : i + 1] for i in range(0, 40, 4)] + [rows[:64]]:
            over_grpc = client.infer(MODEL, [grpc_input(x)], model_version=VERSION)
            tensor = triton_http.InferInput("input-0", list(x.shape), "FP64")
            tensor.set_data_from_numpy(x)
            over_rest = rest.infer(MODEL, [tensor], model_version=VERSION)
            for output in ("predict", "predict_proba"):
                np.testing.assert_array_equal(over_grpc.as_numpy(output), over_rest.as_numpy(output))
        everything = client.infer(MODEL, [grpc_input(rows)])
        np.testing.assert_array_equal(everything.as_numpy("predict"), classifiers.stable.predictions)
        # FP32 rows arrive raw at 4 bytes a value and are cast as REST casts them.
        as_fp32 = client.infer(MODEL, [grpc_input(rows[:8], "FP32")]).as_numpy("predict_proba")
        tensor = triton_http.InferInput("input-0", [8, rows.shape[1]], "FP32")
        tensor.set_data_from_numpy(rows[:8].astype(np.float32))
        np.testing.assert_array_equal(as_fp32, rest.infer(MODEL, [tensor]).as_numpy("predict_proba"))
    finally:
        rest.close()


def test_health_readiness_and_metadata(start_server: StartServer, classifiers: Classifiers, grpc_client: Any) -> None:
    client = grpc_client(serve(start_server, classifiers))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, VERSION)
    server_metadata = client.get_server_metadata()
    assert server_metadata.name == "modelserver"
    metadata = client.get_model_metadata(MODEL, VERSION, as_json=True)
    assert metadata["name"] == MODEL
    assert metadata["versions"] == [VERSION]
    assert metadata["platform"] == "sklearn"
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "30"]}]
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    for call in (lambda: client.is_model_ready(MODEL, "4"), lambda: client.get_model_metadata("other")):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.NOT_FOUND"
        assert "is not served here (this server serves churn version 3)" in caught.value.message()


def refused(client: Any, inputs: list[Any], **kwargs: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(kwargs.pop("model", MODEL), inputs, **kwargs)
    return caught.value


def test_bad_requests_are_invalid_argument_naming_the_problem(
    start_server: StartServer, classifiers: Classifiers, grpc_client: Any
) -> None:
    server = serve(start_server, classifiers)
    client = grpc_client(server)
    rows = classifiers.dataset.rows
    cases = [
        (refused(client, [grpc_input(rows[:2, :5])]), "has shape [2, 5]; this model takes [rows, 30]"),
        (refused(client, [grpc_input(rows[:2] * np.inf)]), "holds NaN or infinite values"),
        (refused(client, [grpc_input(rows[:2])], parameters={"threshold": 0.7}), "a number with a fraction"),
        (refused(client, [grpc_input(rows[:2])], parameters={"threshold": "2"}), "between 0 and 1"),
        (
            refused(client, [grpc_input(rows[:2])], outputs=[triton_grpc.InferRequestedOutput("score")]),
            "unknown output 'score'; this model has: predict, predict_proba",
        ),
    ]
    for error, words in cases:
        assert error.status() == "StatusCode.INVALID_ARGUMENT", error
        assert words in (error.message() or "")
    unknown = refused(client, [grpc_input(rows[:2])], model="other")
    assert unknown.status() == "StatusCode.NOT_FOUND"

    # A threshold as a string is the way to send a number with a fraction; it decides as over REST.
    strict = client.infer(MODEL, [grpc_input(rows[:50])], parameters={"threshold": "0.99"}).as_numpy("predict")
    loose = client.infer(MODEL, [grpc_input(rows[:50])]).as_numpy("predict")
    assert strict.sum() <= loose.sum()

    # A message over the size limit is refused by gRPC itself, before the data plane (and uncounted).
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\x0a" + b"\xff" * 9 * 1024 * 1024)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_metrics_count_grpc_calls_as_protocol_grpc(
    start_server: StartServer, classifiers: Classifiers, grpc_client: Any
) -> None:
    server = serve(start_server, classifiers)
    client = grpc_client(server)
    rows = classifiers.dataset.rows
    for i in range(7):
        client.infer(MODEL, [grpc_input(rows[i : i + 1])])
    for _ in range(3):
        refused(client, [grpc_input(rows[:1, :3])])
    refused(client, [grpc_input(rows[:1])], model="other")
    assert server.client.post("/predict", json=[dict.fromkeys((f"f{i}" for i in range(30)), 0.0)]).status_code == 200

    text = server.client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted({"model": MODEL, "version": VERSION, **labels}.items()))), 0.0)

    assert value("modelserver_requests_total", protocol="grpc", code="200") == 7
    assert value("modelserver_requests_total", protocol="grpc", code="400") == 3
    # A call for a model this server does not serve is refused (NOT_FOUND) before any model is involved: it is no
    # model's request, so it counts in no model's series.
    assert value("modelserver_requests_total", protocol="grpc", code="404") == 0
    assert value("modelserver_request_duration_seconds_count", protocol="grpc") == 10
    assert value("modelserver_requests_total", protocol="predict", code="200") == 1
    assert value("modelserver_inference_errors_total", reason="invalid_input") == 3
    predicted = sum(value("modelserver_predictions_total", label=label) for label in ("0", "1"))
    assert predicted == 8, "one model, one set of prediction counters for both protocols"


def test_a_taken_grpc_port_stops_the_server_with_the_reason(
    start_server: StartServer, classifiers: Classifiers
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve(start_server, classifiers, "--grpc-port", str(port), ready=False)
        assert server.wait_exit() == 3
    assert not server.ready_seen
    assert f"gRPC cannot be served: gRPC cannot listen on 127.0.0.1:{port}" in server.log()


def test_grpc_can_be_turned_off(start_server: StartServer, classifiers: Classifiers) -> None:
    server = serve(start_server, classifiers, "--no-grpc")
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.grpc_port)) != 0
    assert server.client.get("/v2/health/ready").status_code == 200
