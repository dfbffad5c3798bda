"""Combining the answers of an ensemble's members into one answer (routing document version 2, `ensembles`). Pure.

Answers are the members' JSON bodies, parsed, in the order of the ensemble's `members` (so a tie goes to the member
listed first), each with its weight (1 unless the ensemble gives weights). Both answer shapes our model server gives
are combined:
- Open Inference Protocol v2 (`{"outputs": [...]}`): every member must give the same outputs (names, datatypes,
  shapes). A floating-point output (FP16, BF16, FP32, FP64: probabilities, scores, regression values) becomes the
  weighted mean of the members' values, element by element. Any other output (labels: integers, strings, booleans)
  is decided per row: under `vote` by weighted majority of the members' rows; under `mean` and `weighted`, when a
  probability output ([rows, classes], floating-point) comes with it, as the label of the highest combined
  probability (soft voting, as scikit-learn's VotingClassifier), that column's label being learned from the
  members' own rows (the label a member gave where that column was its highest); a column no member's row named
  falls back to the vote.
- /predict (`{"predictions": [...], "probabilities": [{label: p}, ...]}`): probabilities are averaged per label
  (a label a member does not give counts 0); floating-point predictions are averaged; other predictions are labels,
  decided as above, the label of a probability key being the prediction a member gave where that key was highest.
Anything else, or members that disagree on the answer's shape, is a Mismatch: the ensemble's members do not serve
models that can be combined (a configuration fault, never the request's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelrollout_contract.router_v2 import VOTE, Combine

FLOATS = frozenset({"FP16", "BF16", "FP32", "FP64"})


class Mismatch(ValueError):
    """The members' answers cannot be combined; the message says how they differ."""


class BinaryAnswer(ValueError):
    """A member answered with the binary tensor extension, which an ensemble cannot combine."""


@dataclass(frozen=True, slots=True)
class Answer:
    member: str
    weight: float
    document: Any  # the parsed JSON body


def combine(answers: Sequence[Answer], how: Combine, version: str) -> dict[str, Any]:
    """The one answer the ensemble gives (`model_version`: the ensemble's `version`)."""
    if not answers:
        raise Mismatch("no member answered")
    first = answers[0].document
    if isinstance(first, dict) and isinstance(first.get("outputs"), list):
        combined = _combine_v2(answers, how)
    elif isinstance(first, dict) and isinstance(first.get("predictions"), list):
        combined = _combine_records(answers, how)
    else:
        raise Mismatch(f"{answers[0].member} answered neither Open Inference Protocol outputs nor /predict predictions")
    combined["model_version"] = version
    if "model_name" in first:
        combined = {"model_name": first["model_name"], **combined}
    if "id" in first:
        combined["id"] = first["id"]
    return combined


# --- Open Inference Protocol v2 ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]  # flat, row-major

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    def row(self, i: int) -> list[Any]:
        width = len(self.data) // self.rows if self.rows else 0
        return self.data[i * width : (i + 1) * width]


def _tensors(answer: Answer) -> dict[str, _Tensor]:
    outputs = answer.document.get("outputs") if isinstance(answer.document, dict) else None
    if not isinstance(outputs, list):
        raise Mismatch(f"{answer.member} answered no Open Inference Protocol outputs")
    found: dict[str, _Tensor] = {}
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise Mismatch(f"{answer.member} answered an output that is not a named tensor")
        if "data" not in output:
            if isinstance(output.get("parameters"), dict) and "binary_data_size" in output["parameters"]:
                raise BinaryAnswer(f"{answer.member} answered output {output['name']!r} as binary data")
            raise Mismatch(f"{answer.member} answered output {output['name']!r} without data")
        shape = output.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise Mismatch(f"{answer.member} answered output {output['name']!r} without a shape")
        data = _flat(output["data"])
        size = 1
        for dim in shape:
            size *= dim
        if len(data) != size:
            raise Mismatch(f"{answer.member}'s output {output['name']!r} has {len(data)} values for shape {shape}")
        found[output["name"]] = _Tensor(output["name"], str(output.get("datatype", "")), tuple(shape), data)
    return found


def _combine_v2(answers: Sequence[Answer], how: Combine) -> dict[str, Any]:
    tensors = [_tensors(answer) for answer in answers]
    reference = tensors[0]
    for answer, outputs in zip(answers[1:], tensors[1:], strict=True):
        _check_alike(answers[0].member, reference, answer.member, outputs)
    weights = [answer.weight for answer in answers]
    averaged = {
        name: _mean([t[name].data for t in tensors], weights)
        for name, tensor in reference.items()
        if tensor.datatype in FLOATS
    }
    probabilities = next(
        (name for name, t in reference.items() if t.datatype in FLOATS and len(t.shape) == 2 and t.shape[1] >= 2),
        None,
    )
    combined = []
    for name, tensor in reference.items():
        data = averaged.get(name)
        if data is None:
            scores = None
            if how != VOTE and probabilities is not None:
                width = reference[probabilities].shape[1]
                known = _column_labels([(t[probabilities], t[name]) for t in tensors])
                scores = _SoftLabels(averaged[probabilities], width, known)
            data = _labels([t[name] for t in tensors], weights, scores)
        combined.append({"name": name, "datatype": tensor.datatype, "shape": list(tensor.shape), "data": data})
    return {"outputs": combined}


def _check_alike(first: str, reference: dict[str, _Tensor], member: str, outputs: dict[str, _Tensor]) -> None:
    for name, tensor in reference.items():
        other = outputs.get(name)
        if other is None or (other.datatype, other.shape) != (tensor.datatype, tensor.shape):
            got = "no such output" if other is None else f"{other.datatype} {list(other.shape)}"
            raise Mismatch(
                f"{member} answered output {name!r} as {got}, {first} as {tensor.datatype} {list(tensor.shape)}"
            )
    if set(outputs) != set(reference):
        raise Mismatch(f"{member} answered outputs {sorted(outputs)}, {first} {sorted(reference)}")


@dataclass(frozen=True, slots=True)
class _SoftLabels:
    """The combined probabilities ([rows, width], flat) and the label each column stands for, where known."""

    flat: list[float]
    width: int
    known: dict[int, Any]

    def label(self, row: int) -> Any:
        return self.known.get(_argmax(self.flat[row * self.width : (row + 1) * self.width]))


def _labels(members: Sequence[_Tensor], weights: Sequence[float], soft: _SoftLabels | None) -> list[Any]:
    """A label output's combined data: per row, the label of the highest combined probability where `soft` knows it,
    else the vote."""
    data: list[Any] = []
    for i in range(members[0].rows):
        votes = [tensor.row(i) for tensor in members]
        label = soft.label(i) if soft is not None and len(votes[0]) == 1 else None
        data.extend([label] if label is not None else _vote(votes, weights))
    return data


def _column_labels(pairs: Sequence[tuple[_Tensor, _Tensor]]) -> dict[int, Any]:
    """Column -> label, from each member row whose label has one value: its highest column is its label's."""
    labels: dict[int, Any] = {}
    for probabilities, label in pairs:
        if label.rows != probabilities.rows or len(label.data) != label.rows:
            continue
        for i in range(label.rows):
            labels.setdefault(_argmax(probabilities.row(i)), label.data[i])
    return labels


# --- /predict -----------------------------------------------------------------------------------------------------


def _combine_records(answers: Sequence[Answer], how: Combine) -> dict[str, Any]:
    predictions = _predictions(answers)
    weights = [answer.weight for answer in answers]
    tables = _probability_tables(answers, len(predictions[0]))
    means: list[dict[str, float]] = []
    known: dict[str, Any] = {}
    if tables is not None:
        for i in range(len(predictions[0])):
            keys = list(dict.fromkeys(key for table in tables for key in table[i]))
            columns = [[table[i].get(key, 0.0) for key in keys] for table in tables]
            means.append(dict(zip(keys, _mean(columns, weights), strict=True)))
        for rows, table in zip(predictions, tables, strict=True):
            for label, row in zip(rows, table, strict=True):
                if row:
                    known.setdefault(max(row, key=row.__getitem__), label)
    values: list[Any] = []
    for i in range(len(predictions[0])):
        column = [rows[i] for rows in predictions]
        if all(type(value) is float for value in column):
            values.append(_mean([[value] for value in column], weights)[0])
            continue
        label = None
        if how != VOTE and means and means[i]:
            label = known.get(max(means[i], key=means[i].__getitem__))
        values.append(label if label is not None else _vote([[value] for value in column], weights)[0])
    combined: dict[str, Any] = {"predictions": values}
    if tables is not None:
        combined["probabilities"] = means
    return combined


def _predictions(answers: Sequence[Answer]) -> list[list[Any]]:
    predictions: list[list[Any]] = []
    for answer in answers:
        rows = answer.document.get("predictions") if isinstance(answer.document, dict) else None
        if not isinstance(rows, list):
            raise Mismatch(f"{answer.member} answered no predictions")
        if predictions and len(rows) != len(predictions[0]):
            raise Mismatch(
                f"{answer.member} answered {len(rows)} predictions, {answers[0].member} {len(predictions[0])}"
            )
        predictions.append(rows)
    return predictions


def _probability_tables(answers: Sequence[Answer], rows: int) -> list[list[dict[str, Any]]] | None:
    """Each member's `probabilities` ({label: p} per row), or None unless every member gave them."""
    tables = [answer.document.get("probabilities") for answer in answers]  # every document is a dict by now
    if not all(isinstance(table, list) for table in tables):
        return None
    for answer, table in zip(answers, tables, strict=True):
        assert isinstance(table, list)
        if len(table) != rows or not all(isinstance(row, dict) for row in table):
            raise Mismatch(f"{answer.member}'s probabilities are not one {{label: p}} per prediction")
    return tables


# --- the arithmetic -----------------------------------------------------------------------------------------------


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flat(item))
    return flat


def _mean(columns: Sequence[Sequence[Any]], weights: Sequence[float]) -> list[float]:
    """The weighted mean, element by element, of equally long value lists (one per member)."""
    total = sum(weights)
    out = []
    for values in zip(*columns, strict=True):
        try:
            out.append(sum(w * float(v) for w, v in zip(weights, values, strict=True)) / total)
        except (TypeError, ValueError):
            raise Mismatch(f"a floating-point output holds {values!r}, which are not all numbers") from None
    return out


def _vote(rows: Sequence[list[Any]], weights: Sequence[float]) -> list[Any]:
    """The row with the most weight behind it; on a tie, the one the earliest member gave."""
    tally: dict[str, float] = {}
    first: dict[str, list[Any]] = {}
    for row, weight in zip(rows, weights, strict=True):
        key = repr(row)
        tally[key] = tally.get(key, 0.0) + weight
        first.setdefault(key, row)
    best = max(tally.values())
    return next(row for key, row in first.items() if tally[key] == best)


def _argmax(values: Sequence[Any]) -> int:
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best
