"""Routes by a feature's value in the request body: where the values are read from (named Open Inference Protocol
inputs, a column of the first input, /predict records, the binary extension's JSON part), how they compare, and
that a route takes a request only when every row matches."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from testkit.vectors import ROUTER_V2_VECTORS

from modelrollout_contract.router_v2 import Route, parse_any
from modelserver.routing.features import FeatureMatcher, RequestBody, same, values
from modelserver.routing.snapshot import build_snapshot

V2_NAMED = {
    "inputs": [
        {"name": "amount", "shape": [2], "datatype": "FP64", "data": [10.5, 99]},
        {"name": "country", "shape": [2, 1], "datatype": "BYTES", "data": [["FR"], ["BE"]]},
    ]
}
V2_MATRIX = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 18], [4, 5, 18.0]]}]}


@pytest.mark.parametrize(
    ("document", "feature", "index", "expected"),
    [
        (V2_NAMED, "country", None, ["FR", "BE"]),
        (V2_NAMED, "amount", None, [10.5, 99]),
        (V2_NAMED, "missing", None, None),
        (V2_MATRIX, "age", 2, [18, 18.0]),
        (V2_MATRIX, "age", 0, [1, 4]),
        (V2_MATRIX, "age", 3, None),  # no such column
        ({"inputs": [{"name": "x", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]}, "c", 1, [2, 5]),  # flat data
        ({"inputs": [{"name": "x", "shape": [2, 3], "data": [1, 2, 3]}]}, "c", 1, None),  # data short of the shape
        ({"inputs": [{"name": "x", "shape": [6], "data": [1, 2, 3, 4, 5, 6]}]}, "c", 1, None),  # not a matrix
        ({"inputs": []}, "c", 0, None),
        ({"country": "FR", "amount": 3}, "country", None, ["FR"]),  # /predict, one record
        ([{"country": "FR"}, {"country": "DE"}], "country", None, ["FR", "DE"]),
        ([{"country": "FR"}, {"amount": 1}], "country", None, None),  # a record without it
        ([{"country": "FR"}], "country", 0, None),  # records have no columns
        ([], "country", None, None),
        ("text", "country", None, None),
        (None, "country", None, None),
    ],
)
def test_a_features_values(document: Any, feature: str, index: int | None, expected: list[Any] | None) -> None:
    assert values(document, feature, index) == expected


def body(document: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> RequestBody:
    raw = document if isinstance(document, bytes) else orjson.dumps(document)
    return RequestBody(raw, headers)


def matcher(**route: Any) -> FeatureMatcher:
    return FeatureMatcher.of(Route.model_validate({"to": "b", **route}))


def test_every_row_must_match() -> None:
    assert matcher(feature="country", **{"in": ["FR", "BE"]}).matches(body(V2_NAMED))
    assert not matcher(feature="country", equals="FR").matches(body(V2_NAMED))  # BE in the second row
    assert matcher(feature="age", index=2, equals=18).matches(body(V2_MATRIX))  # 18 and 18.0
    assert not matcher(feature="country", equals="FR").matches(body([{"country": "FR"}, {"country": "DE"}]))
    assert not matcher(feature="country", equals="FR").matches(body(b"{not json"))
    assert not matcher(feature="country", equals="FR").matches(body({"inputs": [{"name": "country", "data": []}]}))


def test_the_binary_extensions_json_part_is_read_and_its_binary_data_is_not() -> None:
    header = orjson.dumps(V2_NAMED)
    raw = header + b"\x00\x01binary tensor bytes"
    length = ((b"inference-header-content-length", str(len(header)).encode()),)
    too_long = ((b"inference-header-content-length", b"999"),)
    assert matcher(feature="amount", **{"in": [10.5, 99]}).matches(body(raw, length))
    assert not matcher(feature="amount", equals=1).matches(body(raw, too_long))
    assert not matcher(feature="amount", equals=1).matches(body(raw))  # not JSON as a whole


def test_the_body_is_parsed_once_however_many_routes_ask() -> None:
    parsed = body(V2_NAMED)
    first = parsed.document
    assert parsed.document is first


@pytest.mark.parametrize(
    ("value", "expected", "equal"),
    [("FR", "FR", True), ("fr", "FR", False), (18, 18.0, True), (18.5, 18, False), (1, "1", False),
     ("1", 1, False), (True, 1, False), (1, True, False), (None, "None", False), ([1], 1, False)],
)  # fmt: skip
def test_values_compare_as_numbers_or_as_text(value: Any, expected: Any, equal: bool) -> None:
    assert same(value, expected) is equal


def test_routes_by_header_and_by_feature_are_tried_in_their_order() -> None:
    document = json.loads((ROUTER_V2_VECTORS / "valid" / "feature-routes.json").read_text())
    snapshot = build_snapshot(parse_any(json.dumps(document)))
    french = orjson.dumps([{"country": "FR", "age": 40}])
    assert snapshot.choose((), 0.5, french).role == "fr"
    assert snapshot.choose((), 0.5, orjson.dumps([{"country": "DE"}])).role == "global"
    assert snapshot.choose((), 0.5, orjson.dumps(V2_MATRIX)).role == "young"  # column 2 is 18 in every row
    assert snapshot.choose(((b"x-model", b"fr"),), 0.5, b"not even json").role == "fr"  # the header route first
    assert snapshot.choose((), 0.5, b"").role == "global"
