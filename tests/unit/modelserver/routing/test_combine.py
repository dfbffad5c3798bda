"""Combining an ensemble's answers (routing.combine): the mean, weighted mean and vote over Open Inference Protocol
outputs and /predict answers, soft-voted labels, ties, and answers that cannot be combined."""

from __future__ import annotations

from typing import Any

import pytest

from modelserver.routing.combine import Answer, BinaryAnswer, Mismatch, combine


def v2(labels: list[int], proba: list[list[float]], name: str = "clf", **extra: Any) -> dict[str, Any]:
    rows = len(labels)
    flat = [p for row in proba for p in row]
    return {
        "model_name": name,
        "model_version": "x",
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [rows], "data": labels},
            {"name": "predict_proba", "datatype": "FP64", "shape": [rows, len(proba[0])], "data": flat},
        ],
    } | extra


def answers(*documents: dict[str, Any], weights: tuple[float, ...] = ()) -> list[Answer]:
    return [Answer(f"m{i}", weights[i] if weights else 1.0, d) for i, d in enumerate(documents)]


def outputs(combined: dict[str, Any]) -> dict[str, list[Any]]:
    return {o["name"]: o["data"] for o in combined["outputs"]}


def test_mean_averages_probabilities_and_labels_each_row_by_the_highest_mean() -> None:
    # Row 0: two members say 0 weakly, one says 1 strongly: the mean favours 1 (soft voting), a vote would say 0.
    a = v2([0, 1], [[0.6, 0.4], [0.2, 0.8]])
    b = v2([0, 1], [[0.55, 0.45], [0.3, 0.7]])
    c = v2([1, 1], [[0.05, 0.95], [0.1, 0.9]])
    combined = combine(answers(a, b, c), "mean", "ens-1")
    got = outputs(combined)
    assert got["predict_proba"] == pytest.approx([0.4, 0.6, 0.2, 0.8])
    assert got["predict"] == [1, 1]
    assert (combined["model_name"], combined["model_version"]) == ("clf", "ens-1")
    shapes = {o["name"]: (o["datatype"], o["shape"]) for o in combined["outputs"]}
    assert shapes == {"predict": ("INT64", [2]), "predict_proba": ("FP64", [2, 2])}


def test_vote_takes_the_majority_label_and_still_averages_probabilities() -> None:
    a = v2([0], [[0.6, 0.4]])
    b = v2([0], [[0.55, 0.45]])
    c = v2([1], [[0.05, 0.95]])
    got = outputs(combine(answers(a, b, c), "vote", "e"))
    assert got["predict"] == [0]
    assert got["predict_proba"] == pytest.approx([0.4, 0.6])


def test_a_vote_tie_goes_to_the_member_listed_first_and_weights_break_it() -> None:
    a, b = v2([3], [[0.2, 0.8]]), v2([7], [[0.9, 0.1]])
    assert outputs(combine(answers(a, b), "vote", "e"))["predict"] == [3]
    assert outputs(combine(answers(b, a), "vote", "e"))["predict"] == [7]
    assert outputs(combine(answers(a, b, weights=(1, 2)), "vote", "e"))["predict"] == [7]


def test_weighted_counts_each_member_by_its_weight() -> None:
    a = v2([0], [[0.9, 0.1]])
    b = v2([1], [[0.2, 0.8]])
    got = outputs(combine(answers(a, b, weights=(1, 3)), "weighted", "e"))
    assert got["predict_proba"] == pytest.approx([(0.9 + 3 * 0.2) / 4, (0.1 + 3 * 0.8) / 4])
    assert got["predict"] == [1]


def test_string_labels_follow_the_column_their_members_gave_them() -> None:
    def answer(label: str, proba: list[float]) -> dict[str, Any]:
        document = v2([0], [proba])
        document["outputs"][0] = {"name": "predict", "datatype": "BYTES", "shape": [1], "data": [label]}
        return document

    got = outputs(combine(answers(answer("cat", [0.7, 0.3]), answer("dog", [0.1, 0.9])), "mean", "e"))
    assert got["predict"] == ["dog"]  # mean [0.4, 0.6]: column 1, which m1 called "dog"


def test_a_column_no_member_chose_is_decided_by_the_vote() -> None:
    # Mean [0.3, 0.3, 0.4]: column 2, which neither member's own highest was: its label is unknown.
    a = v2([0], [[0.5, 0.1, 0.4]])
    b = v2([1], [[0.1, 0.5, 0.4]])
    assert outputs(combine(answers(a, b), "mean", "e"))["predict"] == [0]  # the vote's tie: the first member


def test_regression_values_are_averaged() -> None:
    def reg(values: list[float]) -> dict[str, Any]:
        return {"outputs": [{"name": "predict", "datatype": "FP32", "shape": [len(values), 1], "data": values}]}

    got = outputs(combine(answers(reg([1.0, 10.0]), reg([3.0, 20.0])), "mean", "e"))
    assert got["predict"] == pytest.approx([2.0, 15.0])
    nested = {"outputs": [{"name": "predict", "datatype": "FP32", "shape": [2, 1], "data": [[5.0], [30.0]]}]}
    assert outputs(combine(answers(reg([1.0, 10.0]), nested), "vote", "e"))["predict"] == pytest.approx([3.0, 20.0])


def test_the_request_id_is_kept() -> None:
    combined = combine(answers(v2([0], [[0.6, 0.4]], id="r-1"), v2([0], [[0.6, 0.4]], id="r-1")), "mean", "e")
    assert combined["id"] == "r-1"


def test_predict_answers_average_probabilities_per_label_and_take_the_best() -> None:
    a = {"predictions": [0, 1], "probabilities": [{"0": 0.6, "1": 0.4}, {"0": 0.3, "1": 0.7}]}
    b = {"predictions": [1, 1], "probabilities": [{"0": 0.1, "1": 0.9}, {"0": 0.4, "1": 0.6}]}
    combined = combine(answers(a, b), "mean", "e")
    assert combined["predictions"] == [1, 1]
    assert combined["probabilities"][0] == pytest.approx({"0": 0.35, "1": 0.65})
    assert combine(answers(a, b), "vote", "e")["predictions"] == [0, 1]  # row 0 tied: the first member's


def test_predict_answers_without_probabilities() -> None:
    assert combine(answers({"predictions": [1.0]}, {"predictions": [2.0]}), "mean", "e")["predictions"] == [1.5]
    labels = answers({"predictions": ["a"]}, {"predictions": ["b"]}, {"predictions": ["b"]})
    assert combine(labels, "mean", "e") == {"predictions": ["b"], "model_version": "e"}


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (v2([0, 1], [[0.6, 0.4], [0.2, 0.8]]), "answered output 'predict' as INT64 [2], m0 as INT64 [1]"),
        (v2([0], [[0.2, 0.3, 0.5]]), "'predict_proba' as FP64 [1, 3]"),
        ({"outputs": []}, "no such output"),
        ({"predictions": [1]}, "m1 answered no Open Inference Protocol outputs"),
        ({"outputs": [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [1, 2]}]}, "2 values for shape"),
        ({"outputs": [{"name": "predict", "shape": [1]}]}, "without data"),
    ],
)
def test_answers_of_different_shapes_are_a_mismatch(other: dict[str, Any], message: str) -> None:
    with pytest.raises(Mismatch, match=message.replace("[", r"\[").replace("]", r"\]")):
        combine(answers(v2([0], [[0.6, 0.4]]), other), "mean", "e")


def test_other_mismatches() -> None:
    with pytest.raises(Mismatch, match="neither"):
        combine(answers({"result": 1}, {"result": 2}), "mean", "e")
    with pytest.raises(Mismatch, match="answered 2 predictions, m0 1"):
        combine(answers({"predictions": [1]}, {"predictions": [1, 2]}), "vote", "e")
    text = {"outputs": [{"name": "score", "datatype": "FP64", "shape": [1], "data": ["high"]}]}
    with pytest.raises(Mismatch, match="not all numbers"):
        combine(answers(text, text), "mean", "e")


def test_binary_outputs_cannot_be_combined() -> None:
    output = {"name": "predict", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}
    binary = {"outputs": [output]}
    with pytest.raises(BinaryAnswer, match="as binary data"):
        combine(answers(binary, binary), "mean", "e")


def test_a_member_answering_another_shape_of_document_is_a_mismatch() -> None:
    with pytest.raises(Mismatch, match="m1 answered no predictions"):
        combine(answers({"predictions": [1]}, [1]), "vote", "e")  # type: ignore[arg-type]
