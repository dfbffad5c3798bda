from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from modelrollout_contract.metrics import AGREE, DISAGREE, ERROR
from modelserver.routing.shadow import Comparison, Predictions, compare, predictions


def v2(*outputs: dict[str, Any]) -> bytes:
    return orjson.dumps({"model_name": "m", "model_version": "1", "outputs": list(outputs)})


def out(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [len(data)], "data": data}


def simple(values: list[Any]) -> bytes:
    return orjson.dumps({"model_name": "m", "predictions": values})


def check(a: bytes, b: bytes) -> Comparison:
    return compare(a, None, b, None)


def test_identical_answers_agree() -> None:
    body = v2(out("predict", "INT64", [0, 1, 1]), out("predict_proba", "FP64", [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]))
    assert check(body, body) == Comparison(AGREE)  # integer labels: no distance between class ids
    assert check(simple(["a", "b"]), simple(["a", "b"])) == Comparison(AGREE)


def test_labels_are_compared_not_probabilities() -> None:
    stable = v2(out("predict", "INT64", [0, 1]), out("predict_proba", "FP64", [[0.9, 0.1], [0.2, 0.8]]))
    moved = v2(out("predict", "INT64", [0, 1]), out("predict_proba", "FP64", [[0.7, 0.3], [0.4, 0.6]]))
    flipped = v2(out("predict", "INT64", [1, 1]), out("predict_proba", "FP64", [[0.4, 0.6], [0.4, 0.6]]))
    assert check(stable, moved).result == AGREE
    assert check(stable, flipped).result == DISAGREE


def test_strings_and_integers_must_be_equal_exactly() -> None:
    assert check(simple(["setosa", "virginica"]), simple(["setosa", "versicolor"])).result == DISAGREE
    assert check(simple([1, 2]), simple([1, 3])).result == DISAGREE
    assert check(simple([True]), simple([1])).result == DISAGREE
    assert check(simple(["1"]), simple([1])).result == DISAGREE


def test_floats_agree_within_a_relative_tolerance_and_give_the_mean_abs_diff() -> None:
    same = check(simple([100.0, 200.0]), simple([100.00001, 200.0]))
    assert same.result == AGREE
    assert same.abs_diff == pytest.approx(0.000005)
    apart = check(simple([1.0, 2.0, 3.0]), simple([1.5, 2.0, 2.0]))
    assert apart.result == DISAGREE
    assert apart.abs_diff == pytest.approx(0.5)
    assert check(simple([0.0]), simple([1e-15])).result == AGREE
    assert check(simple([150.0]), simple([150])).abs_diff == 0.0


def test_regression_over_v2_gives_the_mean_abs_diff_per_row() -> None:
    stable = v2(out("predict", "FP64", [10.0, 20.0, 30.0, 40.0]))
    shifted = v2(out("predict", "FP64", [35.0, 45.0, 55.0, 65.0]))
    assert check(stable, shifted) == Comparison(DISAGREE, 25.0)
    assert check(stable, stable) == Comparison(AGREE, 0.0)


def test_without_a_predict_output_every_output_is_compared() -> None:
    stable = v2(out("predict_proba", "FP32", [0.25, 0.75]))
    assert check(stable, v2(out("predict_proba", "FP32", [0.25, 0.75]))) == Comparison(AGREE, 0.0)
    assert check(stable, v2(out("predict_proba", "FP32", [0.5, 0.5]))) == Comparison(DISAGREE, 0.25)


@pytest.mark.parametrize(
    ("stable", "shadow"),
    [
        (simple([1, 2]), simple([1, 2, 3])),
        (v2(out("predict", "INT64", [1])), v2(out("scores", "FP64", [1.0]))),
    ],
)
def test_different_shapes_disagree(stable: bytes, shadow: bytes) -> None:
    assert check(stable, shadow).result == DISAGREE


@pytest.mark.parametrize(
    "shadow",
    [b"", b"<html>oops</html>", b"[1, 2]", orjson.dumps({"error": "model failed"}), v2(), v2({"datatype": "FP64"})],
)
def test_unreadable_answers_are_errors(shadow: bytes) -> None:
    assert check(simple([1.0]), shadow) == Comparison(ERROR)
    assert check(shadow, simple([1.0])) == Comparison(ERROR)


def binary_answer(values: np.ndarray[Any, Any], datatype: str) -> tuple[bytes, str]:
    blob = values.tobytes()
    header = orjson.dumps(
        {"outputs": [{"name": "predict", "datatype": datatype, "shape": list(values.shape),
                      "parameters": {"binary_data_size": len(blob)}}]}
    )  # fmt: skip
    return header + blob, str(len(header))


def test_binary_tensor_outputs_are_decoded() -> None:
    body, length = binary_answer(np.array([1.5, 2.5], dtype="<f4"), "FP32")
    assert predictions(body, length) == Predictions([1.5, 2.5], floating=True, names=("predict",))
    other, other_length = binary_answer(np.array([1.5, 3.5], dtype="<f4"), "FP32")
    assert compare(body, length, other, other_length) == Comparison(DISAGREE, 0.5)
    # The same answer in JSON and in binary compares equal.
    assert compare(body, length, v2(out("predict", "FP32", [1.5, 2.5])), None) == Comparison(AGREE, 0.0)


def test_binary_bytes_outputs_are_decoded() -> None:
    blob = b"".join(struct.pack("<I", len(s)) + s for s in (b"setosa", b"virginica"))
    header = orjson.dumps(
        {
            "outputs": [
                {"name": "predict", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(blob)}}
            ]
        }
    )
    assert predictions(header + blob, str(len(header))) == Predictions(
        ["setosa", "virginica"], floating=False, names=("predict",)
    )


def test_broken_binary_answers_are_errors() -> None:
    body, length = binary_answer(np.array([1.5, 2.5], dtype="<f8"), "FP64")
    assert compare(body, length, body[:-3], length).result == ERROR
    assert compare(body, length, body, "99999").result == ERROR
    assert compare(body, length, body, "x").result == ERROR
