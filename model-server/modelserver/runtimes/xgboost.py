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
    SignedModel,
    derive_signature,
    from_scores,
    require_file,
)

_PROBABILISTIC = {"binary:logistic", "multi:softprob"}
_LABELLING = {"binary:hinge", "multi:softmax"}


class BoosterModel(SignedModel):
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
        self._signature = derive_signature(
            names=None if names is None else tuple(names),
            width=booster.num_features(),
            options=options,
            dtype=np.float32,
            classes=classes,
        )

    def predict(self, x: Array) -> Prediction:
        # inplace_predict skips building a DMatrix, which dominates the cost of small requests.
        raw = np.asarray(self._booster.inplace_predict(x, validate_features=False))
        if self._objective in _LABELLING:
            return Prediction(raw.reshape(len(x)).astype(np.int64))
        return from_scores(raw, len(x), self._signature.classes, binary=self._objective == "binary:logistic")


def load(path: Path | None, options: LoadOptions) -> Model:
    return BoosterModel(xgboost.Booster(model_file=str(require_file(path, "xgboost"))), options)
