"""Open Inference Protocol v2 tensor datatypes and the little-endian numpy dtype of each (binary tensor extension),
as strings so that this package needs no numpy."""

from __future__ import annotations

from typing import Literal

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]  # fmt: skip
# Numeric and boolean datatypes -> numpy dtype strings; BYTES has none (length-prefixed strings).
NUMPY: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
