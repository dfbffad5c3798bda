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
    SignedModel,
    derive_signature,
    from_scores,
    require_file,
)


class LightGBMModel(SignedModel):
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
        self._signature = derive_signature(
            names=tuple(booster.feature_name()),
            width=booster.num_feature(),
            options=options,
            dtype=np.float64,
            classes=classes,
        )

    def predict(self, x: Array) -> Prediction:
        raw = np.asarray(self._booster.predict(x, num_threads=self._threads))
        return from_scores(raw, len(x), self._signature.classes, binary=self._binary)


def load(path: Path | None, options: LoadOptions) -> Model:
    return LightGBMModel(lightgbm.Booster(model_file=str(require_file(path, "lightgbm"))), options)
