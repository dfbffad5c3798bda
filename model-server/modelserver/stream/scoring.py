"""The model on a micro-batch's valid records, in one call, and each prediction's output value.

An output value is a JSON object: `prediction` (a classifier's label, a regressor's number), `probabilities`
({class: probability}, classifiers that give them), `decision` (binary classifiers with a threshold: P(second
class) >= threshold), `model` and `version`, then the passthrough fields of the record (null when it had none)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from modelserver.runtimes.base import Array, Model, Prediction


class ModelFailed(Exception):
    """The model raised on a batch, or answered it with the wrong number of rows: the batch's records are
    dead-lettered (model_error), the consumer goes on."""


class Scorer:
    def __init__(self, model: Model, *, name: str, version: str, threshold: float | None = None) -> None:
        self.model = model
        self.signature = model.signature
        classes = self.signature.classes
        if threshold is not None and (classes is None or len(classes) != 2):
            raise ValueError("threshold applies to binary classifiers only")
        self.threshold = threshold
        self.name = name
        self.version = version
        # JSON object keys are text: a class 1 is "1", as in the server's and the batch scorer's outputs.
        self._class_keys = [str(c) for c in classes] if classes is not None else None

    def predict(self, matrix: Array) -> Prediction:
        """One model call on every valid record of the batch; ModelFailed when it raises or miscounts."""
        try:
            prediction = self.model.predict(matrix)
        except Exception as exc:  # any model failure is a batch's, never the consumer's
            raise ModelFailed(f"{type(exc).__name__}: {exc}") from exc
        rows = len(matrix)
        proba = prediction.probabilities
        if len(prediction.values) != rows or (proba is not None and len(proba) != rows):
            raise ModelFailed(f"the model answered {len(prediction.values)} rows for {rows}")
        return prediction

    def values(self, prediction: Prediction, passthrough: Sequence[dict[str, Any]] = ()) -> list[bytes]:
        """The output value of each predicted row, in order; `passthrough` (when given) has one dict per row."""
        labels = np.asarray(prediction.values).tolist()
        documents: list[dict[str, Any]] = [{"prediction": label} for label in labels]
        proba = prediction.probabilities
        if self._class_keys is not None and proba is not None:
            keys = self._class_keys
            for document, row in zip(documents, np.asarray(proba, dtype=np.float64).tolist(), strict=True):
                document["probabilities"] = dict(zip(keys, row, strict=True))
        if self.threshold is not None:
            positive = proba[:, 1] if proba is not None else np.zeros(len(labels))
            for document, decision in zip(documents, (positive >= self.threshold).tolist(), strict=True):
                document["decision"] = decision
        for document in documents:
            document["model"] = self.name
            document["version"] = self.version
        if passthrough:
            for document, extra in zip(documents, passthrough, strict=True):
                document.update(extra)
        return [orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY) for document in documents]
