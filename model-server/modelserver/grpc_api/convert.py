"""Open Inference Protocol messages of gRPC <-> what the data plane takes and gives (pure: no I/O, no server).

A request becomes the same `InferenceRequest` REST validates (so a bad field is refused with the same words) and
one value source per input: its raw bytes (`raw_input_contents`, what tritonclient sends) or its typed `contents`
as an array. Outputs always travel as `raw_output_contents`, as Triton answers: one copy of each array's bytes,
where typed contents would box every value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelserver.dataplane import V2Result, parse_fields
from modelserver.errors import InvalidInput
from modelserver.grpc_api import grpc_predict_v2_pb2 as pb
from modelserver.protocol import InferenceRequest
from modelserver.runtimes.base import Array
from modelserver.tensors import NUMERIC, binary_data

# The typed field of InferTensorContents for each datatype (FP16 has none: it travels raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# The wire type of each numeric field: its values are read at that width, then cast to the model's dtype.
_FIELD_DTYPE: dict[str, np.dtype[Any]] = {
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}
# What an InferParameter can hold in this proto; Triton's proto adds double_param and uint64_param, which reach
# us as unknown fields and so as a parameter with no value.
_PARAMETER_KINDS = "bool_param, int64_param or string_param"

ParameterValue = bool | int | str


def parameters(entries: Mapping[str, pb.InferParameter], where: str) -> dict[str, ParameterValue] | None:
    """A parameter map as plain values; None when empty (as an absent JSON `parameters`)."""
    if not entries:
        return None
    values: dict[str, ParameterValue] = {}
    for key, parameter in entries.items():
        kind = parameter.WhichOneof("parameter_choice")
        if kind is None:
            # Refused rather than dropped: a threshold sent as a double would otherwise be ignored in silence.
            raise InvalidInput(
                f"{where}[{key!r}] holds no value this server reads ({_PARAMETER_KINDS}); "
                f"a number with a fraction goes as string_param, e.g. '0.7'"
            )
        value: ParameterValue = getattr(parameter, kind)
        values[key] = value
    return values


def infer_request(message: pb.ModelInferRequest) -> tuple[InferenceRequest, list[memoryview | Array]]:
    """The request as the data plane validates it, and each input's values (raw bytes or a typed array)."""
    fields: dict[str, Any] = {
        "id": message.id or None,
        "parameters": parameters(message.parameters, "parameters"),
        "inputs": [
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
                "parameters": parameters(tensor.parameters, f"inputs[{index}].parameters"),
            }
            for index, tensor in enumerate(message.inputs)
        ],
        "outputs": [
            {"name": output.name, "parameters": parameters(output.parameters, f"outputs[{index}].parameters")}
            for index, output in enumerate(message.outputs)
        ]
        or None,
    }
    request = parse_fields(InferenceRequest, fields)
    raw = message.raw_input_contents
    if not raw:
        return request, [_typed(tensor) for tensor in message.inputs]
    if len(raw) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents holds {len(raw)} tensors for {len(message.inputs)} inputs: "
            "send one per input, in the order of inputs"
        )
    for tensor in message.inputs:
        if tensor.HasField("contents"):
            raise InvalidInput(
                f"input {tensor.name!r} has contents and raw_input_contents is set too: send every input's values "
                "in raw_input_contents, or every input's in its contents"
            )
    return request, [memoryview(values) for values in raw]


def _typed(tensor: pb.ModelInferRequest.InferInputTensor) -> Array:
    where = f"input {tensor.name!r}"
    if tensor.datatype not in NUMERIC:
        # The data plane refuses the datatype itself, with the words REST uses; the values do not matter then.
        return np.empty(0)
    expected = CONTENTS_FIELD.get(tensor.datatype)
    if expected is None:
        raise InvalidInput(f"{where} is {tensor.datatype}, which has no typed contents: send it in raw_input_contents")
    contents = tensor.contents
    given = [field.name for field, _ in contents.ListFields()]
    if given and given != [expected]:
        other = ", ".join(f"contents.{name}" for name in given if name != expected)
        raise InvalidInput(
            f"{where} is declared {tensor.datatype} but holds values in {other}: send {tensor.datatype} values in "
            f"contents.{expected} (or declare the datatype of the field you send)"
        )
    values: Sequence[Any] = getattr(contents, expected)
    if not values and tensor.shape and all(tensor.shape):
        raise InvalidInput(f"{where} has no values: send them in contents.{expected} or in raw_input_contents")
    return np.asarray(values, dtype=_FIELD_DTYPE[expected])


def infer_response(name: str, version: str, result: V2Result) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=name, model_version=version, id=result.request.id or "")
    for tensor in result.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.append(binary_data(tensor.array))
    return response


def model_metadata(metadata: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    """The data plane's metadata (REST's JSON) as the message; its `parameters` have no field there."""
    Tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[Tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in metadata["inputs"]],
        outputs=[Tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in metadata["outputs"]],
    )
