"""One record batch in, its output rows and its rejected rows out.

Output columns, in order: the id columns (as read), `prediction` (label or value), `probability_<class>` per
class (classifiers that give probabilities), `decision` (binary classifiers with a threshold: P(second class) >=
threshold), `model_name`, `model_version`. Rejected rows keep every input column plus `reason`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from modelrollout_contract.batch import PredictionSummary
from modelserver.batch.errors import BatchError
from modelserver.batch.sketch import DDSketch
from modelserver.batch.validate import CheckedSchema, features
from modelserver.runtimes.base import Model, Prediction

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
        self.model = model
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

    def score(self, batch: pa.RecordBatch, tally: Tally) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
        found = features(batch, self.checked.features, self.signature.dtype)
        tally.read += batch.num_rows
        rejected = None
        valid = batch
        matrix = found.matrix
        if found.invalid.any():
            keep = ~found.invalid
            rejected = batch.filter(pa.array(found.invalid)).append_column(REASON, pa.array(found.reasons, pa.string()))
            valid = batch.filter(pa.array(keep))
            matrix = matrix[keep]
            tally.rejected += rejected.num_rows
        prediction = self.model.predict(matrix) if len(matrix) else _empty(self.signature.classes)
        tally.scored += valid.num_rows
        self._summarise(prediction, tally)
        return self._output(valid, prediction), rejected

    def _summarise(self, prediction: Prediction, tally: Tally) -> None:
        classes = self.signature.classes
        tally.classifier = classes is not None
        if classes is None:
            tally.score.add(prediction.values)
            return
        labels, counts = np.unique(np.asarray(prediction.values), return_counts=True)  # then only the few as text
        tally.labels.update({str(label): int(n) for label, n in zip(labels.tolist(), counts.tolist(), strict=True)})
        if prediction.probabilities is not None and len(classes) == 2:
            tally.score.add(prediction.probabilities[:, 1])

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
