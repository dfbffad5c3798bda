"""Messages <-> the data plane's request and tensors: raw contents as tritonclient sends them, typed contents, and
the refusals that name the field and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import _utils as triton_utils

from modelserver.dataplane import DataPlane, V2Result
from modelserver.errors import InvalidInput, ServingError
from modelserver.grpc_api import convert
from modelserver.grpc_api import grpc_predict_v2_pb2 as pb
from modelserver.protocol import InferenceRequest
from modelserver.tensors import OutputTensor
from tests.unit.modelserver import builders
from tests.unit.modelserver.conftest import make_plane


@pytest.fixture
def plane(logistic: builders.Built) -> DataPlane:
    return make_plane(logistic.path)


def triton_request(*inputs: Any, **kwargs: Any) -> pb.ModelInferRequest:
    """What tritonclient.grpc puts on the wire, read back with our messages (tritonclient's own module and ours share
    this process: our descriptor pool is our own)."""
    arguments: dict[str, Any] = {
        "model_version": "", "request_id": "", "outputs": None, "sequence_id": 0, "sequence_start": False,
        "sequence_end": False, "priority": 0, "timeout": None, "parameters": None,
    }  # fmt: skip
    message = triton_utils._get_inference_request(model_name="m", inputs=list(inputs), **{**arguments, **kwargs})
    return pb.ModelInferRequest.FromString(message.SerializeToString())


def rows() -> np.ndarray[Any, Any]:
    return np.ascontiguousarray(builders.binary_data()[0][:10])


def triton_input(x: np.ndarray[Any, Any], datatype: str, name: str = "input-0") -> Any:
    tensor = triton.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def refusal(message: pb.ModelInferRequest, plane: DataPlane | None = None) -> str:
    def parse() -> None:
        request, values = convert.infer_request(message)
        if plane is not None:
            plane.v2_rows(request, values)

    with pytest.raises(ServingError) as caught:
        parse()
    return caught.value.message


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "FP16", "INT64", "INT32", "UINT8"])
def test_raw_contents_from_tritonclient_give_the_rows(plane: DataPlane, datatype: str) -> None:
    x = rows()
    sent = np.round(x * 10).astype(triton.triton_to_np_dtype(datatype)) if datatype[0] in "IU" else x
    sent = np.abs(sent) if datatype.startswith("U") else sent.astype(triton.triton_to_np_dtype(datatype))
    message = triton_request(triton_input(sent, datatype))
    assert len(message.raw_input_contents) == 1
    request, values = convert.infer_request(message)
    assert isinstance(values[0], memoryview)
    np.testing.assert_array_equal(plane.v2_rows(request, values), sent.astype(np.float64))


def test_typed_contents_give_the_same_rows(plane: DataPlane) -> None:
    x = rows()
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="input-0", datatype="FP64", shape=list(x.shape)).contents.fp64_contents.extend(x.ravel())
    request, values = convert.infer_request(message)
    np.testing.assert_array_equal(plane.v2_rows(request, values), x)
    message.inputs[0].datatype = "FP32"
    message.inputs[0].contents.Clear()
    message.inputs[0].contents.fp32_contents.extend(x.ravel())
    request, values = convert.infer_request(message)
    np.testing.assert_allclose(plane.v2_rows(request, values), x.astype(np.float32), rtol=0)


def test_per_feature_inputs_are_columns(plane: DataPlane) -> None:
    x = rows()
    columns = [triton_input(np.ascontiguousarray(x[:, i]), "FP64", f"f{i}") for i in range(x.shape[1])]
    request, values = convert.infer_request(triton_request(*columns))
    np.testing.assert_array_equal(plane.v2_rows(request, values), x)


def test_request_fields_become_the_data_planes_request() -> None:
    message = triton_request(
        triton_input(np.zeros((1, 2)), "FP64"),
        request_id="r-1",
        outputs=[triton.InferRequestedOutput("predict_proba")],
        parameters={"threshold": "0.7", "flag": True, "n": 3},
    )
    request, _ = convert.infer_request(message)
    assert request.id == "r-1"
    assert request.parameters == {"threshold": "0.7", "flag": True, "n": 3}
    assert request.outputs is not None
    assert [o.name for o in request.outputs] == ["predict_proba"]
    assert request.inputs[0].shape == [1, 2]
    assert request.inputs[0].data is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda m: setattr(m.inputs[0], "datatype", "FP99"), ["inputs[0].datatype", "'FP64'"]),
        (lambda m: m.inputs[0].shape.__setitem__(0, -1), ["inputs[0].shape[0]", "greater than or equal to 0"]),
        (lambda m: m.inputs[0].shape.extend([1] * 8), ["inputs[0].shape", "at most 8"]),
        (lambda m: m.raw_input_contents.append(b"x"), ["raw_input_contents holds 2 tensors for 1 inputs"]),
        (lambda m: m.inputs[0].contents.fp64_contents.append(1.0), ["'input-0' has contents", "raw_input_contents"]),
        (lambda m: m.parameters["threshold"].Clear(), ["parameters['threshold']", "string_param", "'0.7'"]),
    ],
)
def test_bad_messages_are_refused_naming_the_field(change: Any, words: list[str]) -> None:
    message = triton_request(triton_input(np.zeros((1, 2)), "FP64"), parameters={"threshold": "0.5"})
    change(message)
    said = refusal(message)
    for word in words:
        assert word in said


def test_a_triton_double_parameter_is_refused_not_ignored() -> None:
    """Triton's proto has double_param, ours does not: a threshold sent as a float arrives with no value."""
    message = triton_request(triton_input(np.zeros((1, 2)), "FP64"), parameters={"threshold": 0.7})
    assert "parameters['threshold'] holds no value" in refusal(message)


def test_typed_contents_in_the_wrong_field_name_the_right_one() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp64_contents.extend([1.0, 2.0])
    said = refusal(message)
    assert "declared FP32 but holds values in contents.fp64_contents" in said
    assert "contents.fp32_contents" in said


def test_missing_values_and_fp16_contents_are_refused_with_the_fix() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP64", shape=[1, 2])
    assert "send them in contents.fp64_contents or in raw_input_contents" in refusal(message)
    message.inputs[0].datatype = "FP16"
    assert "FP16, which has no typed contents: send it in raw_input_contents" in refusal(message)


def test_the_data_plane_refuses_what_it_refuses_over_rest(plane: DataPlane) -> None:
    """Shapes, sizes, datatypes and values are the data plane's checks, worded as over REST."""
    x = rows()
    assert "has shape [5, 3]; this model takes [rows, 20]" in refusal(
        triton_request(triton_input(np.zeros((5, 3)), "FP64")), plane
    )
    short = triton_request(triton_input(x, "FP64"))
    short.raw_input_contents[0] = short.raw_input_contents[0][:-8]
    assert "binary bytes do not hold shape" in refusal(short, plane)
    assert "holds NaN or infinite values" in refusal(triton_request(triton_input(x * np.inf, "FP64")), plane)
    text = triton_request(triton_input(np.array([[b"a"]], dtype=np.object_), "BYTES"))
    assert "has datatype BYTES; this model takes numeric tensors" in refusal(text, plane)


def test_a_response_carries_raw_outputs_tritonclient_reads() -> None:
    labels = np.array(["no", "yes"], dtype=np.object_)
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]])
    request = InferenceRequest.model_validate(
        {"id": "r-9", "inputs": [{"name": "i", "shape": [1], "datatype": "FP64"}]}
    )
    result = V2Result(request, [OutputTensor("predict", labels), OutputTensor("predict_proba", probabilities)])
    response = convert.infer_response("m", "3", result)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "r-9")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("predict", "BYTES", [2]),
        ("predict_proba", "FP64", [2, 2]),
    ]
    read = triton.InferResult(triton.service_pb2.ModelInferResponse.FromString(response.SerializeToString()))
    np.testing.assert_array_equal(read.as_numpy("predict_proba"), probabilities)
    assert read.as_numpy("predict").tolist() == [b"no", b"yes"]


def test_metadata_is_the_data_planes(plane: DataPlane) -> None:
    message = convert.model_metadata(plane.metadata())
    assert (message.name, list(message.versions), message.platform) == ("m", ["1"], "sklearn")
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [("input-0", "FP64", [-1, 20])]
    assert [t.name for t in message.outputs] == ["predict", "predict_proba"]


def test_invalid_input_is_the_refusal_type() -> None:
    assert issubclass(InvalidInput, ServingError)
