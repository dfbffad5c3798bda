"""The data plane: every request shape it accepts, every problem it names, and the metrics it keeps."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY

from modelserver import dataplane as dataplane_module
from modelserver.dataplane import DataPlane
from modelserver.errors import ServingError
from modelserver.inference_http import HEADER_LENGTH, encode_v2
from modelserver.metrics import PROTOCOLS
from modelserver.protocol import InferenceResponse
from tests.unit.modelserver import builders
from tests.unit.modelserver.conftest import make_plane


@pytest.fixture
def plane(logistic: builders.Built) -> DataPlane:
    # A fresh model name per test keeps each test's metric series its own.
    return make_plane(logistic.path, name=f"m{uuid.uuid4().hex[:8]}")


def v2(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def matrix(x: np.ndarray[Any, Any], datatype: str = "FP64") -> dict[str, Any]:
    return {"name": "input-0", "shape": list(x.shape), "datatype": datatype, "data": x.tolist()}


async def infer(plane: DataPlane, body: bytes, binary: bytes = b"") -> dict[str, np.ndarray[Any, Any]]:
    with plane.observe("v2") as call:
        request, x = plane.parse_v2(body, binary)
        result = await plane.infer_v2(request, x, call)
    return {t.name: t.array for t in result.outputs}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_v2_matrix_gives_labels_and_probabilities(plane: DataPlane, logistic: builders.Built) -> None:
    x = logistic.x[:5]
    outputs = await infer(plane, v2(matrix(x)))
    np.testing.assert_array_equal(outputs["predict"], logistic.estimator.predict(x))
    np.testing.assert_allclose(outputs["predict_proba"], logistic.estimator.predict_proba(x))


async def test_v2_flat_data_and_integer_datatype(plane: DataPlane, logistic: builders.Built) -> None:
    x = np.round(logistic.x[:2])
    flat = {"name": "in", "shape": [2, 20], "datatype": "INT64", "data": x.astype(int).ravel().tolist()}
    outputs = await infer(plane, v2(flat))
    np.testing.assert_array_equal(outputs["predict"], logistic.estimator.predict(x))


async def test_v2_one_input_per_feature(plane: DataPlane, logistic: builders.Built) -> None:
    x = logistic.x[:3]
    inputs = [{"name": f"f{i}", "shape": [3], "datatype": "FP64", "data": x[:, i].tolist()} for i in range(20)]
    outputs = await infer(plane, v2(*reversed(inputs)))
    np.testing.assert_array_equal(outputs["predict"], logistic.estimator.predict(x))


async def test_v2_binary_tensor_extension(plane: DataPlane, logistic: builders.Built) -> None:
    x = logistic.x[:4].astype("<f4")
    header = v2({"name": "x", "shape": [4, 20], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}})
    outputs = await infer(plane, header, x.tobytes())
    np.testing.assert_array_equal(outputs["predict"], logistic.estimator.predict(x.astype(np.float64)))


async def test_v2_requested_outputs_only(plane: DataPlane, logistic: builders.Built) -> None:
    outputs = await infer(plane, v2(matrix(logistic.x[:1]), outputs=[{"name": "predict_proba"}]))
    assert list(outputs) == ["predict_proba"]


async def test_v2_threshold_parameter_moves_the_decision(plane: DataPlane, logistic: builders.Built) -> None:
    x = logistic.x[:50]
    low = await infer(plane, v2(matrix(x), parameters={"threshold": 0.0}))
    high = await infer(plane, v2(matrix(x), parameters={"threshold": 1.0}))
    assert set(low["predict"].tolist()) == {1}
    assert set(high["predict"].tolist()) == {0}


BAD_V2 = [
    (b'{"inputs": [', 400, "malformed", "malformed JSON"),
    (b"[]", 400, "invalid_input", "request body: Input should be an object"),
    (v2(), 400, "invalid_input", "at least 1 item"),
    (v2({"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}), 400, "invalid_input", "[rows, 20]"),
    (v2({"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [1, 2]}), 400, "invalid_input", "holds 2 values"),
    (v2({"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}), 400, "invalid_input", "number"),
    (v2({"name": "x", "shape": [1, 2], "datatype": "BOOL", "data": [1, 0]}), 400, "invalid_input", "BOOL"),
    (v2({"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3]]}), 400, "invalid_input", "regular"),
    (v2({"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [True] * 20}), 400, "invalid_input", "number"),
    (v2({"name": "x", "shape": [0, 20], "datatype": "FP64", "data": []}), 400, "invalid_input", "no rows"),
    (v2({"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}), 400, "invalid_input", "non-integer"),
    (v2({"name": "x", "shape": [1, 20], "datatype": "FP64", "data": [10**400] * 20}), 400, "invalid_input", "large"),
    (b'{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [NaN]}]}', 400, "non_finite", "finite"),
    (v2({"name": "x", "shape": [-1, 20], "datatype": "FP64", "data": [1]}), 400, "invalid_input", "shape"),
    (v2({"name": "x", "shape": [1, 20], "datatype": "FP64", "parameters": {"binary_data_size": 999}}), 400,
     "invalid_input", "does not fit"),
    (v2({"name": "f0", "shape": [1], "datatype": "FP64", "data": [1]},
        {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}), 400, "invalid_input", "unknown features: zz"),
    (v2(matrix(np.zeros((1, 20))), outputs=[{"name": "nope"}]), 400, "invalid_input", "unknown output 'nope'"),
    (v2(matrix(np.zeros((1, 20))), parameters={"threshold": 2}), 400, "invalid_input", "between 0 and 1"),
    (v2(matrix(np.zeros((101, 20)))), 413, "too_large", "exceed the limit of 100"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "reason", "message"), BAD_V2)
async def test_v2_rejections_name_the_problem(
    plane: DataPlane, body: bytes, status: int, reason: str, message: str
) -> None:
    with pytest.raises(ServingError, match=r".") as caught:
        await infer(plane, body)
    assert (caught.value.status, caught.value.reason) == (status, reason)
    assert message in caught.value.message
    assert sample("modelserver_inference_errors_total", model=plane.name, version="1", reason=reason) == 1
    assert sample("modelserver_requests_total", model=plane.name, version="1", protocol="v2", code=str(status)) == 1


async def test_binary_bytes_that_belong_to_no_input_are_refused(plane: DataPlane) -> None:
    with pytest.raises(ServingError, match="belong to no input"):
        await infer(plane, v2(matrix(np.zeros((1, 20)))), b"\x00" * 8)


async def records(plane: DataPlane, body: Any, threshold: Any = None) -> dict[str, Any]:
    with plane.observe("predict") as call:
        x = plane.parse_records(orjson.dumps(body))
        return await plane.predict_records(x, call, plane.check_threshold(threshold))


def named(row: np.ndarray[Any, Any]) -> dict[str, float]:
    return {f"f{i}": float(v) for i, v in enumerate(row)}


async def test_records_one_or_many(plane: DataPlane, logistic: builders.Built) -> None:
    one = await records(plane, named(logistic.x[0]))
    assert one["predictions"] == logistic.estimator.predict(logistic.x[:1]).tolist()
    many = await records(plane, [named(row) for row in logistic.x[:3]])
    assert many["predictions"] == logistic.estimator.predict(logistic.x[:3]).tolist()
    expected = logistic.estimator.predict_proba(logistic.x[:3])
    np.testing.assert_allclose([[p["0"], p["1"]] for p in many["probabilities"]], expected)


async def test_records_threshold(plane: DataPlane, logistic: builders.Built) -> None:
    body = [named(row) for row in logistic.x[:40]]
    assert set((await records(plane, body, "0"))["predictions"]) == {1}
    assert set((await records(plane, body, "1"))["predictions"]) == {0}


BAD_RECORDS: list[tuple[Any, Any, str]] = [
    ({"f0": 1.0}, None, "missing features: f1, f2"),
    ({**{f"f{i}": 0 for i in range(20)}, "extra": 1}, None, "unknown features: extra"),
    ({**{f"f{i}": 0 for i in range(19)}, "f19": "7"}, None, "f19: Input should be a valid number"),
    ({**{f"f{i}": 0 for i in range(19)}, "f19": None}, None, "f19: Input should be a valid number"),
    ([], None, "no records"),
    ("text", None, "request body: Input should be"),
    ({f"f{i}": 0 for i in range(20)}, "abc", "not a number"),
    ({f"f{i}": 0 for i in range(20)}, "-0.5", "between 0 and 1"),
]


@pytest.mark.parametrize(("body", "threshold", "message"), BAD_RECORDS)
async def test_records_rejections(plane: DataPlane, body: Any, threshold: Any, message: str) -> None:
    with pytest.raises(ServingError, match=r".") as caught:
        await records(plane, body, threshold)
    assert caught.value.status == 400
    assert message in caught.value.message


async def test_threshold_needs_a_binary_classifier(iris: builders.Built) -> None:
    plane = make_plane(iris.path)
    with pytest.raises(ServingError, match="binary classifiers only"):
        plane.check_threshold(0.5)


def test_success_series_exist_at_zero_before_the_first_request(plane: DataPlane) -> None:
    # Prometheus' increase() needs two points of a series: one first exported at the first request would hide
    # the requests of its first scrapes from a canary's first analysis.
    labels = {"model": plane.name, "version": "1"}
    for protocol in PROTOCOLS:
        assert (
            REGISTRY.get_sample_value("modelserver_requests_total", {**labels, "protocol": protocol, "code": "200"})
            == 0
        )
        assert (
            REGISTRY.get_sample_value("modelserver_request_duration_seconds_count", {**labels, "protocol": protocol})
            == 0
        )


async def test_metrics_count_requests_labels_and_values(plane: DataPlane, regressor: builders.Built) -> None:
    x = np.zeros((3, 20))
    expected = plane.model.predict(x).values
    await infer(plane, v2(matrix(x)))
    labels = {"model": plane.name, "version": "1"}
    assert sample("modelserver_requests_total", **labels, protocol="v2", code="200") == 1
    assert sample("modelserver_request_duration_seconds_count", **labels, protocol="v2") == 1
    assert sum(sample("modelserver_predictions_total", **labels, label=str(k)) for k in (0, 1)) == 3
    assert sample("modelserver_predictions_total", **labels, label=str(expected[0])) >= 1

    reg = make_plane(regressor.path, name=f"r{uuid.uuid4().hex[:8]}")
    await records(reg, [{f"f{i}": 0.0 for i in range(10)}] * 4)
    assert sample("modelserver_prediction_value_count", model=reg.name, version="1") == 4


async def test_v2_response_encodes_to_the_protocol_schema(plane: DataPlane, iris: builders.Built) -> None:
    string_labels = make_plane(iris.path)
    with string_labels.observe("v2") as call:
        request, x = string_labels.parse_v2(v2(matrix(iris.x[:2])))
        response = encode_v2(string_labels, await string_labels.infer_v2(request, x, call))
    parsed = InferenceResponse.model_validate_json(response.body)
    assert parsed.outputs[0].datatype == "BYTES"
    assert parsed.outputs[0].data == iris.estimator.predict(iris.x[:2]).tolist()


async def test_v2_binary_outputs_are_length_prefixed_for_bytes(iris: builders.Built) -> None:
    plane = make_plane(iris.path)
    body = v2(matrix(iris.x[:1]), outputs=[{"name": "predict", "parameters": {"binary_data": True}}])
    with plane.observe("v2") as call:
        request, x = plane.parse_v2(body)
        response = encode_v2(plane, await plane.infer_v2(request, x, call))
    header_length = int(dict(response.headers)[HEADER_LENGTH])
    tail = bytes(response.body)[header_length:]
    (length,) = struct.unpack("<I", tail[:4])
    assert tail[4 : 4 + length].decode() == iris.estimator.predict(iris.x[:1])[0]


async def test_duration_is_timed_from_the_whole_body_not_from_a_slow_upload(
    plane: DataPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that takes 5 s to send its body (here: a clock moved by 5 s before body_received) does not make
    the model's latency 5 s; the 0.25 s of work after it does."""
    now = [1000.0]
    monkeypatch.setattr(dataplane_module.time, "perf_counter", lambda: now[0])
    labels = {"model": plane.name, "version": "1", "protocol": "v2"}
    before = sample("modelserver_request_duration_seconds_sum", **labels)
    with plane.observe("v2") as call:
        now[0] += 5.0  # the upload
        call.body_received()
        now[0] += 0.25  # parsing, the model, encoding
    assert sample("modelserver_request_duration_seconds_sum", **labels) - before == pytest.approx(0.25)
