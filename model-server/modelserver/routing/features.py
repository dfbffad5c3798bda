"""A feature's values in a request body, for the routes that match on them (routing document version 2).

Read only when a route needs them, once per request however many routes ask (`RequestBody`):
- Open Inference Protocol v2 (`{"inputs": [...]}`): the values of the input named like the feature (one per row:
  shape [rows] or [rows, 1]), or with `index` the column of that number of the first input (shape [rows, columns]);
  with the binary tensor extension, only inputs sent as JSON are read;
- /predict: the feature's value in each record (an object, or a list of objects).
A body that is not JSON, or holds no such feature, has no values, and matches no feature route: the backend the
split picks answers (and refuses it, if it is invalid). A route matches when the feature has a value in every row
and each value satisfies it, so a request is never split between models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelrollout_contract.router_v2 import Route, Scalar
from modelserver.asgi import HEADER_LENGTH

_UNREAD = object()


class RequestBody:
    """A request's body, parsed as JSON at most once and only when asked."""

    __slots__ = ("_document", "_headers", "raw")

    def __init__(self, raw: bytes, headers: Sequence[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._headers = headers
        self._document: Any = _UNREAD

    @property
    def document(self) -> Any:
        if self._document is _UNREAD:
            self._document = _parse(self.raw, self._headers)
        return self._document


def _parse(raw: bytes, headers: Sequence[tuple[bytes, bytes]]) -> Any:
    text = raw
    for name, value in headers:
        if name == HEADER_LENGTH:  # binary tensor extension: a JSON header, then the binary data
            if not value.isdigit() or int(value) > len(raw):
                return None
            text = raw[: int(value)]
            break
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def values(document: Any, feature: str, index: int | None) -> list[Any] | None:
    """The feature's value in each row of the request, or None when the request does not carry it."""
    if isinstance(document, dict) and isinstance(document.get("inputs"), list):
        return _v2_values(document["inputs"], feature, index)
    if index is not None:
        return None
    records = [document] if isinstance(document, dict) else document
    if not isinstance(records, list) or not records:
        return None
    found = []
    for record in records:
        if not isinstance(record, dict) or feature not in record:
            return None
        found.append(record[feature])
    return found


def _v2_values(inputs: list[Any], feature: str, index: int | None) -> list[Any] | None:
    if index is None:
        for tensor in inputs:
            if isinstance(tensor, dict) and tensor.get("name") == feature:
                data = _flat(tensor.get("data"))
                return data or None
        return None
    first = inputs[0] if inputs else None
    if not isinstance(first, dict):
        return None
    shape = first.get("shape")
    data = _flat(first.get("data"))
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) for n in shape)) or not data:
        return None
    rows, columns = shape
    if index >= columns or rows * columns != len(data):
        return None
    return data[index::columns]


def _flat(data: Any) -> list[Any]:
    """Row-major values of nested lists (OIP v2 allows data flat or nested as the shape)."""
    if not isinstance(data, list):
        return []
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flat(item) if isinstance(item, list) else [item])
    return flat


@dataclass(frozen=True, slots=True)
class FeatureMatcher:
    feature: str
    index: int | None
    accepted: tuple[Scalar, ...]

    @classmethod
    def of(cls, route: Route) -> FeatureMatcher:
        assert route.feature is not None  # Route checks a feature route sets its feature
        accepted = tuple(route.in_) if route.in_ is not None else (route.equals,) if route.equals is not None else ()
        return cls(route.feature, route.index, accepted)

    def matches(self, body: RequestBody) -> bool:
        found = values(body.document, self.feature, self.index)
        return found is not None and bool(found) and all(self._accepts(value) for value in found)

    def _accepts(self, value: Any) -> bool:
        return any(same(value, expected) for expected in self.accepted)


def same(value: Any, expected: Scalar) -> bool:
    """A request's value equals a route's: numbers by value (1 == 1.0), text exactly; a boolean is neither."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return False
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return float(value) == float(expected)
    return isinstance(value, str) and isinstance(expected, str) and value == expected
