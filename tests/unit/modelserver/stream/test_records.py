"""A micro-batch's values decoded into one feature matrix: good records in both shapes (an object of named
features, a list in feature order), and every kind of poison record with its reason, in batch order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelserver.stream.records import (
    MISSING_FIELD,
    NON_FINITE,
    NOT_JSON,
    WRONG_LENGTH,
    WRONG_TYPE,
    Decoder,
)

FEATURES = ("age", "income", "score")
decode = Decoder(FEATURES, np.dtype(np.float64), passthrough=("id",))


def test_objects_and_lists_decode_into_one_matrix_in_feature_order() -> None:
    values = [
        json.dumps({"score": 3, "age": 1.5, "income": -2, "id": "a", "ignored": [1]}).encode(),
        b"[4, 5.25, 6]",
        json.dumps({"age": 7, "income": 8, "score": 9e300}).encode(),
    ]
    decoded = decode(values)
    assert decoded.invalid == []
    assert decoded.rows == [0, 1, 2]
    np.testing.assert_array_equal(decoded.matrix, [[1.5, -2, 3], [4, 5.25, 6], [7, 8, 9e300]])
    assert decoded.matrix.dtype == np.float64
    # passthrough fields: as given, null when absent, and a list record has none
    assert decoded.passthrough == [{"id": "a"}, {"id": None}, {"id": None}]


@pytest.mark.parametrize(
    ("value", "reason", "said"),
    [
        (None, NOT_JSON, "no value"),
        (b"", NOT_JSON, "not JSON"),
        (b"{age: 1}", NOT_JSON, "not JSON"),
        (b"\xff\xfe\xfa", NOT_JSON, "not JSON"),
        (b'"a text"', WRONG_TYPE, "a JSON string"),
        (b"42", WRONG_TYPE, "a JSON number"),
        (b"null", WRONG_TYPE, "a JSON null"),
        (b'{"age": "1", "income": 2, "score": 3}', WRONG_TYPE, "'age' is a JSON string"),
        (b'{"age": 1, "income": true, "score": 3}', WRONG_TYPE, "'income' is a JSON boolean"),
        (b'{"age": 1, "income": 2, "score": null}', WRONG_TYPE, "'score' is a JSON null"),
        (b"[1, [2], 3]", WRONG_TYPE, "'income' is a JSON array"),
        (b'{"age": 1, "score": 3}', MISSING_FIELD, "missing feature 'income'"),
        (b"{}", MISSING_FIELD, "missing feature 'age'"),
        (b"[1, 2]", WRONG_LENGTH, "a list of 2 values; the model takes 3 features"),
        (b"[1, 2, 3, 4]", WRONG_LENGTH, "a list of 4 values"),
        (b"[]", WRONG_LENGTH, "a list of 0 values"),
        (b'{"age": NaN, "income": 2, "score": 3}', NON_FINITE, "'age' is not finite (nan)"),
        (b"[1, Infinity, 3]", NON_FINITE, "'income' is not finite (inf)"),
        (b"[1, 2, -Infinity]", NON_FINITE, "'score' is not finite (-inf)"),
        (b"[1, 2, 1e400]", NON_FINITE, "'score' is not finite (inf)"),
        (b"[1, 2, " + b"9" * 400 + b"]", NON_FINITE, "'score' is not finite (999"),
    ],
)
def test_a_poison_record_is_invalid_with_its_reason(value: bytes | None, reason: str, said: str) -> None:
    decoded = decode([b"[1, 2, 3]", value, b"[4, 5, 6]"])
    assert [(i.index, i.reason) for i in decoded.invalid] == [(1, reason)]
    assert said in decoded.invalid[0].error
    # the good records around it are kept, in order
    assert decoded.rows == [0, 2]
    np.testing.assert_array_equal(decoded.matrix, [[1, 2, 3], [4, 5, 6]])
    assert decoded.passthrough == [{"id": None}, {"id": None}]


def test_invalid_records_come_in_batch_order_with_the_first_problem_of_each() -> None:
    values = [b"[NaN, 1, 2]", b"nope", b"[1, 2, 3]", b'{"age": Infinity, "income": "x"}', b"[1, NaN, Infinity]"]
    decoded = decode(values)
    assert [(i.index, i.reason) for i in decoded.invalid] == [
        (0, NON_FINITE),
        (1, NOT_JSON),
        (3, MISSING_FIELD),  # a missing feature is seen before the values are
        (4, NON_FINITE),
    ]
    assert "'income'" in decoded.invalid[3].error  # the first non-finite feature of the row
    assert decoded.rows == [2]


def test_a_float32_model_refuses_what_float32_cannot_hold() -> None:
    decoded = Decoder(FEATURES, np.dtype(np.float32))([b"[1, 2, 3]", b"[1e39, 2, 3]"])
    assert decoded.matrix.dtype == np.float32
    assert [(i.index, i.reason) for i in decoded.invalid] == [(1, NON_FINITE)]
    assert decoded.rows == [0]


def test_a_batch_of_nothing_valid_gives_an_empty_matrix_of_the_models_width() -> None:
    decoded = decode([b"x", None])
    assert decoded.matrix.shape == (0, 3)
    assert decoded.rows == []
    assert len(decoded.invalid) == 2
    assert decode([]).matrix.shape == (0, 3)
