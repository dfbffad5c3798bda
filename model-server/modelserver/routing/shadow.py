"""Comparing stable's answer with the shadow's: agree, disagree or error, and |stable - shadow| when numeric.

What is compared is the prediction, not every byte: for the Open Inference Protocol v2 the `predict` output
when the answer has one (a classifier's labels, a regressor's values), otherwise every output by name; for
`/predict` the `predictions` list. A retrained classifier whose probabilities moved but whose labels did not
therefore agrees, which is what shadowAgreement is meant to measure. Outputs sent with the binary tensor
extension (Inference-Header-Content-Length) are decoded first.

- agree: same number of values, strings / booleans / integers equal exactly, floats within 1e-6 relative
  (or 1e-12 absolute, so that two values that both round to zero agree);
- disagree: anything else that could be compared;
- error: the shadow failed or timed out, or either body is not an answer we can read.
The absolute difference is the mean over the compared values (one per row for a regressor) and is only
given when they are floating point (on either side), since the distance between two class ids means nothing.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from modelrollout_contract.datatypes import NUMPY
from modelrollout_contract.metrics import AGREE, DISAGREE, ERROR

REL_TOL = 1e-6
ABS_TOL = 1e-12
PREDICT = "predict"


class Unreadable(ValueError):
    """A body that holds no predictions we can compare."""


@dataclass(frozen=True, slots=True)
class Comparison:
    result: str
    abs_diff: float | None = None


@dataclass(frozen=True, slots=True)
class Predictions:
    values: list[Any]  # flattened, in a fixed order of outputs
    floating: bool
    names: tuple[str, ...] = ()  # the outputs compared (v2), which must be the same on both sides


def compare(
    stable: bytes, stable_header_length: str | None, shadow: bytes, shadow_header_length: str | None
) -> Comparison:
    """Compare two answers to the same request (bodies and their Inference-Header-Content-Length, if any)."""
    try:
        ours = predictions(stable, stable_header_length)
        theirs = predictions(shadow, shadow_header_length)
    except Unreadable:
        return Comparison(ERROR)
    return compare_predictions(ours, theirs)


def compare_predictions(stable: Predictions, shadow: Predictions) -> Comparison:
    a, b = stable.values, shadow.values
    if len(a) != len(b) or stable.names != shadow.names:
        return Comparison(DISAGREE)
    agree = all(equal_values(x, y) for x, y in zip(a, b, strict=True))
    abs_diff = None
    if (stable.floating or shadow.floating) and a and _all_numbers(a) and _all_numbers(b):
        abs_diff = math.fsum(abs(float(x) - float(y)) for x, y in zip(a, b, strict=True)) / len(a)
    return Comparison(AGREE if agree else DISAGREE, abs_diff)


def predictions(body: bytes, header_length: str | None = None) -> Predictions:
    """The predictions in an answer body; Unreadable when there are none we can read."""
    header, binary = _split(body, header_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise Unreadable("not JSON") from None
    if not isinstance(document, dict):
        raise Unreadable("not a JSON object")
    outputs = document.get("outputs")
    if isinstance(outputs, list):
        return _v2(outputs, binary)
    values = document.get("predictions")
    if isinstance(values, list):
        flat = _flatten(values)
        return Predictions(flat, any(isinstance(v, float) for v in flat))
    raise Unreadable("neither `outputs` nor `predictions`")


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise Unreadable("Inference-Header-Content-Length does not fit the body")
    cut = int(header_length)
    return body[:cut], body[cut:]


def _v2(outputs: list[Any], binary: bytes) -> Predictions:
    decoded: dict[str, tuple[str, list[Any]]] = {}
    offset = 0
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise Unreadable("an output without a name")
        datatype = str(output.get("datatype", ""))
        if "data" in output:
            data = output["data"]
            values = _flatten(data) if isinstance(data, list) else [data]
        else:
            size = (output.get("parameters") or {}).get("binary_data_size")
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise Unreadable(f"output {output['name']!r} has neither data nor a fitting binary_data_size")
            values = _decode_binary(datatype, binary[offset : offset + size])
            offset += size
        decoded[output["name"]] = (datatype, values)
    if not decoded:
        raise Unreadable("no outputs")
    names = [PREDICT] if PREDICT in decoded else sorted(decoded)
    flat: list[Any] = []
    floating = True
    for name in names:
        datatype, values = decoded[name]
        flat.extend(values)
        floating = floating and _floating(datatype, values)
    return Predictions(flat, floating, tuple(names))


def _decode_binary(datatype: str, blob: bytes) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(blob):
            if offset + 4 > len(blob):
                raise Unreadable("a truncated BYTES element")
            (length,) = struct.unpack_from("<I", blob, offset)
            offset += 4
            values.append(blob[offset : offset + length].decode("utf-8", "replace"))
            offset += length
        return values
    import numpy as np  # noqa: PLC0415 - only binary answers need it; the router starts without numpy

    dtype = NUMPY.get(datatype)
    if dtype is None or len(blob) % np.dtype(dtype).itemsize:
        raise Unreadable(f"cannot decode binary {datatype or 'untyped'} data")
    decoded: list[Any] = np.frombuffer(blob, dtype=dtype).tolist()
    return decoded


def _flatten(values: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in values):
        return values
    flat: list[Any] = []
    stack = [iter(values)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _floating(datatype: str, values: list[Any]) -> bool:
    """OIP floating-point datatypes; without a datatype, values of which at least one is a JSON float."""
    if datatype:
        return datatype.startswith("FP")
    return any(isinstance(v, float) for v in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _all_numbers(values: list[Any]) -> bool:
    return all(_is_number(v) for v in values)


def equal_values(a: Any, b: Any) -> bool:
    """Two predicted values agree: integers, strings and booleans exactly, floats within REL_TOL (or ABS_TOL)."""
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return type(a) is type(b) and bool(a == b)
