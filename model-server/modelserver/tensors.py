"""Open Inference Protocol tensors <-> numpy, including the binary tensor data extension (tritonclient's
default): inputs may follow the JSON header as raw little-endian bytes, outputs may be sent back that way."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelrollout_contract.datatypes import NUMPY
from modelserver.errors import InvalidInput, NonFiniteInput
from modelserver.protocol import RequestInput
from modelserver.runtimes.base import Array

# The numeric datatypes (BOOL and BYTES are decoded apart).
NUMERIC: dict[str, np.dtype[Any]] = {name: np.dtype(code) for name, code in NUMPY.items() if name != "BOOL"}


@dataclass(frozen=True, slots=True)
class OutputTensor:
    name: str
    array: Array
    binary: bool = False

    @property
    def datatype(self) -> str:
        return datatype_of(self.array.dtype)

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol's datatype of a numpy dtype (any byte order)."""
    # Every output asks this: the usual dtypes are looked up, as the search costs a few µs a request.
    return _DATATYPES.get(dtype) or _search_datatype(dtype)


def _search_datatype(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "b":
        return "BOOL"
    if dtype.kind in "iuf":
        for name, candidate in NUMERIC.items():
            if candidate.kind == dtype.kind and candidate.itemsize == dtype.itemsize:
                return name
    return "BYTES"


_DATATYPES = {dtype: _search_datatype(dtype) for dtype in [*NUMERIC.values(), np.dtype(bool)]}


def decode_input(tensor: RequestInput, binary: memoryview | Array | None, target: np.dtype[Any]) -> Array:
    """The tensor as an array of its declared shape, cast to the model's `target` dtype and checked finite.

    Its values are `binary` (raw little-endian bytes: REST's binary extension, gRPC's raw_input_contents), else an
    array already typed by its transport (gRPC's typed contents), else the request's JSON `data`."""
    where = f"input {tensor.name!r}"
    source = NUMERIC.get(tensor.datatype)
    if source is None:
        raise InvalidInput(f"{where} has datatype {tensor.datatype}; this model takes numeric tensors")
    count = math.prod(tensor.shape)
    if isinstance(binary, np.ndarray):
        array = binary
        if array.size != count:
            raise InvalidInput(f"{where} holds {array.size} values but its shape {tensor.shape} needs {count}")
    elif binary is not None:
        if len(binary) != count * source.itemsize:
            raise InvalidInput(
                f"{where}: {len(binary)} binary bytes do not hold shape {tensor.shape} of {tensor.datatype}"
            )
        array = np.frombuffer(binary, dtype=source)
    else:
        if tensor.data is None:
            raise InvalidInput(f"{where} has neither 'data' nor binary data")
        array = _from_json(tensor.data, where)
        if array.size != count:
            raise InvalidInput(f"{where} holds {array.size} values but its shape {tensor.shape} needs {count}")
        if source.kind in "iu" and array.dtype.kind == "f" and not np.array_equal(array, np.trunc(array)):
            raise InvalidInput(f"{where} is declared {tensor.datatype} but holds non-integer numbers")
    try:
        shaped = array.reshape(tensor.shape)
    except ValueError:
        # The counts agree (a zero dimension makes any other size "fit"), but numpy cannot index dimensions
        # whose product overflows its index type.
        raise InvalidInput(f"{where}: shape {tensor.shape} is too large to hold in memory") from None
    return _to_model_dtype(shaped, target, where)


def _from_json(data: list[Any], where: str) -> Array:
    try:
        array = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError) as exc:  # ragged nesting, e.g. [[1, 2], [3]]
        raise InvalidInput(f"{where}: data is not a regular array ({exc})") from None
    except OverflowError:
        raise InvalidInput(f"{where}: an integer in data is too large for a number") from None
    return array


def _to_model_dtype(array: Array, target: np.dtype[Any], where: str) -> Array:
    if array.dtype == target:
        cast = array  # the usual case; numpy's errstate alone would cost a few µs of a 1-row request
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            cast = array.astype(target, copy=False)
    if cast.dtype.kind == "f" and not np.isfinite(cast).all():
        raise NonFiniteInput(f"{where} holds NaN or infinite values (or values too large for {target})")
    return cast


def to_model_matrix(rows: list[list[Any]], target: np.dtype[Any], where: str) -> Array:
    return _to_model_dtype(_from_json(rows, where), target, where)


def json_data(array: Array) -> Any:
    """Row-major flat data for a JSON response; numeric arrays stay numpy (orjson serializes them)."""
    flat = array.reshape(-1)
    if flat.dtype.kind in "iufb":
        return np.ascontiguousarray(flat)
    return [str(value) for value in flat.tolist()]


def binary_data(array: Array) -> bytes:
    flat = array.reshape(-1)
    if flat.dtype.kind in "iufb":
        return np.ascontiguousarray(flat).astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
    # BYTES elements: a 4-byte little-endian length, then the UTF-8 bytes.
    parts = []
    for value in flat.tolist():
        encoded = str(value).encode()
        parts.append(struct.pack("<I", len(encoded)) + encoded)
    return b"".join(parts)
