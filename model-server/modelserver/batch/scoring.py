"""One record batch in, its output rows and its rejected rows out.

Output columns, in order: the id columns (as read), `prediction` (label or value), `probability_<class>` per
class (classifiers that give probabilities), `decision` (binary classifiers with a threshold: P(second class) >=
threshold), `model_name`, `model_version`. Rejected rows keep every input column plus `reason`.

A model's part (`Predictor`: checked features in, prediction of the valid rows out, the time in predict calls) is
apart from the output's, so a shadow run's reference model scores the same batch without writing anything."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from modelrollout_contract.batch import PredictionSummary
from modelserver.batch.compare import Answers
from modelserver.batch.errors import BatchError
from modelserver.batch.sketch import DDSketch
from modelserver.batch.validate import CheckedSchema, features
from modelserver.runtimes.base import Array, Model, Prediction

REASON = "reason"


@dataclass
class Tally:
    """What the run has seen so far: counts and the prediction summary."""

    read: int = 0
    scored: int = 0
    rejected: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    score: DDSketch = field(default_factory=DDSketch)
    classifier: bool = False

    def summary(self) -> PredictionSummary:
        labels = dict(sorted(self.labels.items())) if self.classifier else None
        return PredictionSummary(labels=labels, score=self.score.to_wire() if self.score.count else None)


def _class_type(classes: tuple[Any, ...]) -> pa.DataType:
    return pa.array(list(classes)).type


def score_of(prediction: Prediction, classes: tuple[Any, ...] | None) -> Array | None:
    """The number summarised and compared per record: a regressor's value, a binary classifier's probability of
    its second class; None for other classifiers (and a binary one without probabilities)."""
    if classes is None:
        return np.asarray(prediction.values, dtype=np.float64)
    if prediction.probabilities is not None and len(classes) == 2:
        return np.asarray(prediction.probabilities[:, 1], dtype=np.float64)
    return None


@dataclass(frozen=True)
class Predicted:
    """One model's answer to one batch: its invalid rows (with why) and its prediction of the others, in order."""

    invalid: np.ndarray[Any, np.dtype[np.bool_]]
    reasons: list[str]
    prediction: Prediction


class Predictor:
    """A model on record batches: each record's features checked, the valid records predicted; `seconds` is the
    time spent in the model's predict calls alone (what two models on one pod and one input compare)."""

    def __init__(self, model: Model, feature_names: Sequence[str]) -> None:
        self.model = model
        self.signature = model.signature
        self.feature_names = tuple(feature_names)
        self.seconds = 0.0
        self._warm = False

    def __call__(self, batch: pa.RecordBatch) -> Predicted:
        found = features(batch, self.feature_names, self.signature.dtype)
        matrix = found.matrix[~found.invalid] if found.invalid.any() else found.matrix
        if not len(matrix):
            return Predicted(found.invalid, found.reasons, _empty(self.signature.classes))
        if not self._warm:
            # A model's first call pays one-off costs (lazy imports, thread pools, caches): untimed, so that two
            # models timed on the same records compare their steady cost, not which of them was called first.
            self.model.predict(matrix[:1])
            self._warm = True
        began = time.perf_counter()
        prediction = self.model.predict(matrix)
        self.seconds += time.perf_counter() - began
        return Predicted(found.invalid, found.reasons, prediction)

    def answers(self, predicted: Predicted) -> Answers:
        classes = self.signature.classes
        labels = np.asarray(predicted.prediction.values) if classes is not None else None
        return Answers(~predicted.invalid, labels, score_of(predicted.prediction, classes))


class Scorer:
    def __init__(
        self,
        model: Model,
        checked: CheckedSchema,
        input_schema: pa.Schema,
        *,
        model_name: str,
        model_version: str,
        threshold: float | None,
    ) -> None:
        self.predictor = Predictor(model, checked.features)
        self.checked = checked
        self.signature = model.signature
        self.model_name = model_name
        self.model_version = model_version
        classes = self.signature.classes
        if threshold is not None and (classes is None or len(classes) != 2):
            raise BatchError("InvalidSettings", "threshold applies to binary classifiers only")
        self.threshold = threshold
        fields = [input_schema.field(name) for name in checked.ids]
        prediction = _class_type(classes) if classes is not None else pa.float64()
        fields.append(pa.field("prediction", prediction))
        self._proba_names = [f"probability_{c}" for c in classes] if classes is not None else []
        fields += [pa.field(name, pa.float64()) for name in self._proba_names]
        if threshold is not None:
            fields.append(pa.field("decision", pa.bool_()))
        fields += [pa.field("model_name", pa.string()), pa.field("model_version", pa.string())]
        self.output_schema = pa.schema(fields)
        self.rejects_schema = input_schema.append(pa.field(REASON, pa.string()))

    def write(
        self, batch: pa.RecordBatch, predicted: Predicted, tally: Tally
    ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
        """The output rows of `batch` from this model's `predicted` answer to it (`self.predictor(batch)`), and its
        rejected rows (None when every record was valid)."""
        tally.read += batch.num_rows
        rejected = None
        valid = batch
        if predicted.invalid.any():
            reasons = pa.array(predicted.reasons, pa.string())
            rejected = batch.filter(pa.array(predicted.invalid)).append_column(REASON, reasons)
            valid = batch.filter(pa.array(~predicted.invalid))
            tally.rejected += rejected.num_rows
        tally.scored += valid.num_rows
        self._summarise(predicted.prediction, tally)
        return self._output(valid, predicted.prediction), rejected

    def _summarise(self, prediction: Prediction, tally: Tally) -> None:
        classes = self.signature.classes
        tally.classifier = classes is not None
        if classes is not None:
            labels, counts = np.unique(np.asarray(prediction.values), return_counts=True)  # then only the few as text
            tally.labels.update({str(label): int(n) for label, n in zip(labels.tolist(), counts.tolist(), strict=True)})
        score = score_of(prediction, classes)
        if score is not None:
            tally.score.add(score)

    def _output(self, valid: pa.RecordBatch, prediction: Prediction) -> pa.RecordBatch:
        rows = valid.num_rows
        columns: list[pa.Array] = [valid.column(name) for name in self.checked.ids]
        columns.append(pa.array(prediction.values, type=self.output_schema.field("prediction").type))
        if self._proba_names:
            proba = prediction.probabilities
            if proba is None:
                proba = np.full((rows, len(self._proba_names)), np.nan)
            columns += [pa.array(proba[:, j], pa.float64()) for j in range(len(self._proba_names))]
        if self.threshold is not None:
            positive = prediction.probabilities[:, 1] if prediction.probabilities is not None else np.zeros(rows)
            columns.append(pa.array(positive >= self.threshold, pa.bool_()))
        columns.append(pa.array([self.model_name] * rows, pa.string()))
        columns.append(pa.array([self.model_version] * rows, pa.string()))
        return pa.RecordBatch.from_arrays(columns, schema=self.output_schema)


def _empty(classes: tuple[Any, ...] | None) -> Prediction:
    width = len(classes) if classes is not None else 0
    return Prediction(np.empty(0), np.empty((0, width)) if classes is not None else None)
