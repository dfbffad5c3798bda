from __future__ import annotations

import struct

import numpy as np
import pytest

from modelserver.errors import InvalidInput, NonFiniteInput
from modelserver.protocol import RequestInput
from modelserver.tensors import NUMERIC, binary_data, datatype_of, decode_input, json_data


def tensor(**fields: object) -> RequestInput:
    return RequestInput.model_validate({"name": "x", **fields})


def test_datatype_names_follow_the_protocol() -> None:
    assert datatype_of(np.dtype(np.float32)) == "FP32"
    assert datatype_of(np.dtype(np.int64)) == "INT64"
    assert datatype_of(np.dtype(np.uint8)) == "UINT8"
    assert datatype_of(np.dtype(bool)) == "BOOL"
    assert datatype_of(np.array(["a"]).dtype) == "BYTES"


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "INT8", "INT32", "INT64", "UINT16"])
def test_binary_inputs_decode_little_endian(datatype: str) -> None:
    values = np.arange(6, dtype=NUMERIC[datatype]).reshape(2, 3)
    raw = memoryview(values.astype(NUMERIC[datatype]).tobytes())
    decoded = decode_input(tensor(shape=[2, 3], datatype=datatype), raw, np.dtype(np.float64))
    np.testing.assert_array_equal(decoded, values.astype(np.float64))


def test_values_that_overflow_the_model_dtype_are_non_finite() -> None:
    with pytest.raises(NonFiniteInput, match="too large for float32"):
        decode_input(tensor(shape=[1, 2], datatype="FP64", data=[1e300, 1]), None, np.dtype(np.float32))


def test_binary_size_must_match_the_shape() -> None:
    with pytest.raises(InvalidInput, match="do not hold shape"):
        decode_input(tensor(shape=[2, 2], datatype="FP32"), memoryview(b"\x00" * 12), np.dtype(np.float32))


def test_missing_data_is_named() -> None:
    with pytest.raises(InvalidInput, match="neither 'data' nor binary"):
        decode_input(tensor(shape=[1, 1], datatype="FP32"), None, np.dtype(np.float32))


def test_output_encodings() -> None:
    numbers = np.array([[1.5, 2.5]], dtype=np.float32)
    assert json_data(numbers).tolist() == [1.5, 2.5]
    assert binary_data(numbers) == struct.pack("<2f", 1.5, 2.5)
    labels = np.array(["ab", "c"])
    assert json_data(labels) == ["ab", "c"]
    assert binary_data(labels) == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"


@pytest.mark.parametrize("binary", [None, memoryview(b"")], ids=["json", "binary"])
def test_an_empty_tensor_with_overflowing_dimensions_is_invalid_not_a_crash(binary: memoryview | None) -> None:
    # Found by the OpenAPI fuzzer (a 500): the zero makes 0 values "fit", numpy cannot index the rest.
    shape = [30606, 31478693562641944, 1316, 0, 5104593250061758464]
    fields = {"shape": shape, "datatype": "INT16"} | ({"data": []} if binary is None else {})
    with pytest.raises(InvalidInput, match="too large"):
        decode_input(tensor(**fields), binary, np.dtype(np.float64))
