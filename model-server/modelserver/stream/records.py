"""A micro-batch's record values decoded and checked into one feature matrix, and why each bad one is bad.

A record's value is a JSON object of named features (the model signature's names; other fields are ignored, and
the passthrough fields are kept for the output) or a JSON list of numbers in feature order. A record is invalid,
with the first problem found as its reason, when it is:

- `not_json`: no value (a tombstone), not UTF-8, or not JSON;
- `wrong_type`: JSON but neither an object nor a list, or a feature that is not a number (a string, a boolean,
  null, an object...);
- `missing_field`: an object without one of the features;
- `wrong_length`: a list of another length than the model's features;
- `non_finite`: a NaN or an infinity (JSON's non-standard NaN / Infinity, or a number beyond a double's range).

Parsing is per record (orjson; the standard library's parser only for what orjson refuses, which is how NaN and
Infinity are told from text that is no JSON at all); the numbers are converted and checked for finiteness for the
whole batch at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

NOT_JSON = "not_json"
WRONG_TYPE = "wrong_type"
MISSING_FIELD = "missing_field"
WRONG_LENGTH = "wrong_length"
NON_FINITE = "non_finite"
MODEL_ERROR = "model_error"  # not a record's fault: the model failed on the batch (see pipeline)
TOO_LARGE = "too_large"  # its output is larger than a message may be (see pipeline)
REASONS = (NOT_JSON, WRONG_TYPE, MISSING_FIELD, WRONG_LENGTH, NON_FINITE, MODEL_ERROR, TOO_LARGE)

# What a JSON number decodes to; bool is a subclass of int but `true` is no feature value.
_NUMBER = frozenset({int, float})
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


@dataclass(frozen=True, slots=True)
class Invalid:
    """Record `index` of the batch cannot be scored: `reason` is one of REASONS, `error` says what exactly."""

    index: int
    reason: str
    error: str


@dataclass(frozen=True)
class Decoded:
    """The valid records' features (`matrix`, one row per valid record, in batch order; `rows`: their indices in
    the batch), their passthrough fields (one dict per valid record; empty without passthrough fields), and the
    invalid records in batch order."""

    matrix: np.ndarray[Any, np.dtype[Any]]
    rows: list[int]
    invalid: list[Invalid]
    passthrough: list[dict[str, Any]] = field(default_factory=list)


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), "number" if type(value) in _NUMBER else type(value).__name__)


def parse(raw: bytes | None) -> tuple[Any, Invalid | None]:
    """The JSON document of one value, or why there is none (the Invalid's index is filled in by the caller)."""
    if raw is None:
        return None, Invalid(-1, NOT_JSON, "the record has no value")
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:
        pass
    try:
        # NaN, Infinity and numbers beyond a double: not JSON to orjson, numbers (then non_finite) to this parser.
        return json.loads(raw), None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, Invalid(-1, NOT_JSON, f"not JSON: {str(exc)[:200]}")


class Decoder:
    """Decodes the values of a batch for a model taking `features` (in this order) as `dtype`."""

    def __init__(self, features: Sequence[str], dtype: np.dtype[Any], passthrough: Sequence[str] = ()) -> None:
        self.features = tuple(features)
        self.dtype = dtype
        self.passthrough = tuple(passthrough)

    def __call__(self, values: Sequence[bytes | None]) -> Decoded:
        width = len(self.features)
        found: list[list[Any]] = []
        rows: list[int] = []
        kept: list[dict[str, Any]] = []
        invalid: list[Invalid] = []
        for index, raw in enumerate(values):
            doc, problem = parse(raw)
            if problem is None:
                row, extra, problem = self._row(doc)
            if problem is not None:
                invalid.append(Invalid(index, problem.reason, problem.error))
                continue
            found.append(row)
            rows.append(index)
            if self.passthrough:
                kept.append(extra)
        matrix, bad = self._matrix(found, width)
        if bad:
            invalid += [Invalid(rows[j], NON_FINITE, why) for j, why in bad.items()]
            invalid.sort(key=lambda item: item.index)
            keep = [j for j in range(len(rows)) if j not in bad]
            matrix, rows = matrix[keep], [rows[j] for j in keep]
            kept = [kept[j] for j in keep] if self.passthrough else kept
        return Decoded(matrix, rows, invalid, kept)

    def _row(self, doc: Any) -> tuple[list[Any], dict[str, Any], Invalid | None]:
        """A document's feature values in order and its passthrough fields, or why it has none."""
        if type(doc) is dict:
            try:
                row = [doc[name] for name in self.features]
            except KeyError as missing:
                return [], {}, Invalid(-1, MISSING_FIELD, f"missing feature {missing.args[0]!r}")
            extra = {name: doc.get(name) for name in self.passthrough}
        elif type(doc) is list:
            if len(doc) != len(self.features):
                return [], {}, Invalid(-1, WRONG_LENGTH, f"a list of {len(doc)} values; the model takes "
                                       f"{len(self.features)} features")  # fmt: skip
            row, extra = doc, dict.fromkeys(self.passthrough)
        else:
            return [], {}, Invalid(-1, WRONG_TYPE, f"a JSON {_json_type(doc)}, not an object of features or a list "
                                   "of numbers")  # fmt: skip
        if not all(map(_NUMBER.__contains__, map(type, row))):
            j = next(j for j, value in enumerate(row) if type(value) not in _NUMBER)
            return [], {}, Invalid(-1, WRONG_TYPE, f"feature {self.features[j]!r} is a JSON {_json_type(row[j])}, "
                                   "not a number")  # fmt: skip
        return row, extra, None

    def _matrix(self, found: list[list[Any]], width: int) -> tuple[np.ndarray[Any, np.dtype[Any]], dict[int, str]]:
        """The rows in the model's dtype, and the rows (by position in `found`) with a value that is not finite
        there (a float32 model: beyond float32's range too), with why."""
        try:
            exact = np.array(found, dtype=np.float64).reshape(len(found), width)
        except OverflowError:  # an integer beyond a double (only the standard parser gives one): find which rows
            exact = np.empty((len(found), width), dtype=np.float64)
            for j, row in enumerate(found):
                exact[j] = [_double(value) for value in row]
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = exact.astype(self.dtype, copy=False)
        finite = np.isfinite(matrix if matrix.dtype.kind == "f" else exact)
        bad: dict[int, str] = {}
        broken = np.flatnonzero(~finite.all(axis=1))
        if len(broken):
            columns = np.argmin(finite[broken], axis=1)  # the first non-finite feature of each broken row
            for j, column in zip(broken.tolist(), columns.tolist(), strict=True):
                bad[j] = f"feature {self.features[column]!r} is not finite ({_short(found[j][column])})"
        return matrix, bad


def _double(value: float) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
