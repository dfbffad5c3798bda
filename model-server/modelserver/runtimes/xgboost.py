"""XGBoost runtime: native Booster files (.ubj, .json, .bst); the objective decides the output kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xgboost

from modelserver.runtimes.base import (
    Array,
    LoadOptions,
    Model,
    Prediction,
    Signature,
    labels_from_probabilities,
    resolve_feature_names,
)

_PROBABILISTIC = {"binary:logistic", "multi:softprob"}
_LABELLING = {"binary:hinge", "multi:softmax"}


class BoosterModel:
    def __init__(self, booster: xgboost.Booster, options: LoadOptions) -> None:
        booster.set_param({"nthread": options.threads})
        learner = json.loads(booster.save_config())["learner"]
        self._objective: str = learner["objective"]["name"]
        n_classes = int(learner["learner_model_param"].get("num_class", "0") or 0)
        classes: tuple[Any, ...] | None = None
        if self._objective.startswith("binary:") and self._objective in _PROBABILISTIC | _LABELLING:
            classes = (0, 1)
        elif self._objective in _PROBABILISTIC | _LABELLING:
            classes = tuple(range(n_classes))
        names = booster.feature_names
        self._booster = booster
        self._signature = Signature(
            feature_names=resolve_feature_names(
                None if names is None else tuple(names), booster.num_features(), options.feature_names
            ),
            dtype=np.dtype(np.float32),
            task="classification" if classes is not None else "regression",
            classes=classes,
        )

    @property
    def signature(self) -> Signature:
        return self._signature

    def predict(self, x: Array) -> Prediction:
        # inplace_predict skips building a DMatrix, which dominates the cost of small requests.
        raw = np.asarray(self._booster.inplace_predict(x, validate_features=False))
        classes = self._signature.classes
        if classes is None:
            return Prediction(raw.reshape(len(x)))
        if self._objective == "binary:logistic":
            proba = np.column_stack([1.0 - raw, raw])
            return Prediction(labels_from_probabilities(proba, classes), proba)
        if self._objective == "multi:softprob":
            proba = raw.reshape(len(x), len(classes))
            return Prediction(labels_from_probabilities(proba, classes), proba)
        return Prediction(raw.reshape(len(x)).astype(np.int64))


def load(path: Path | None, options: LoadOptions) -> Model:
    if path is None:
        raise ValueError("the xgboost runtime needs a model file")
    return BoosterModel(xgboost.Booster(model_file=str(path)), options)
