"""LightGBM runtime: native model text files; the objective decides the output kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

from modelserver.runtimes.base import (
    Array,
    LoadOptions,
    Model,
    Prediction,
    Signature,
    labels_from_probabilities,
    resolve_feature_names,
)


class LightGBMModel:
    def __init__(self, booster: lightgbm.Booster, options: LoadOptions) -> None:
        # dump_model()'s objective reads like "binary sigmoid:1" or "multiclass num_class:3".
        objective = str(booster.dump_model(num_iteration=0).get("objective", "regression")).split()[0]
        classes: tuple[Any, ...] | None = None
        if objective in {"binary", "cross_entropy"}:
            classes = (0, 1)
        elif objective in {"multiclass", "multiclassova"}:
            classes = tuple(range(booster.num_model_per_iteration()))
        self._booster = booster
        self._threads = options.threads
        self._binary = objective in {"binary", "cross_entropy"}
        self._signature = Signature(
            feature_names=resolve_feature_names(
                tuple(booster.feature_name()), booster.num_feature(), options.feature_names
            ),
            dtype=np.dtype(np.float64),
            task="classification" if classes is not None else "regression",
            classes=classes,
        )

    @property
    def signature(self) -> Signature:
        return self._signature

    def predict(self, x: Array) -> Prediction:
        raw = np.asarray(self._booster.predict(x, num_threads=self._threads))
        classes = self._signature.classes
        if classes is None:
            return Prediction(raw.reshape(len(x)))
        proba = np.column_stack([1.0 - raw, raw]) if self._binary else raw.reshape(len(x), len(classes))
        return Prediction(labels_from_probabilities(proba, classes), proba)


def load(path: Path | None, options: LoadOptions) -> Model:
    if path is None:
        raise ValueError("the lightgbm runtime needs a model file")
    return LightGBMModel(lightgbm.Booster(model_file=str(path)), options)
