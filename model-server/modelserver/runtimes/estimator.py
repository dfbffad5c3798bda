"""Adapter for any object with the scikit-learn API (predict, and predict_proba + classes_ for classifiers).

Shared by the sklearn runtime (pickled estimators, pipelines, XGBoost/LightGBM sklearn wrappers) and the
custom runtime (user classes that follow the same duck-typed API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from modelserver.runtimes.base import Array, LoadOptions, Prediction, SignedModel, derive_signature


class EstimatorModel(SignedModel):
    def __init__(
        self,
        estimator: Any,
        options: LoadOptions,
        *,
        dtype: np.dtype[Any] | None = None,
        predict_proba: Callable[[Array], Array] | None = None,
    ) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise ValueError(f"{type(estimator).__name__} has no predict() method")
        self._estimator = estimator
        self._predict_proba = predict_proba or getattr(estimator, "predict_proba", None)
        names = _declared_names(estimator)
        width = getattr(estimator, "n_features_in_", None)
        classes = getattr(estimator, "classes_", None)
        self._proba = classes is not None and callable(self._predict_proba)
        self._signature = derive_signature(
            names=names,
            width=None if width is None else int(width),
            options=options,
            dtype=dtype if dtype is not None else getattr(estimator, "input_dtype", np.float64),
            classes=None if classes is None else tuple(np.asarray(classes).tolist()),
        )
        self._classes = None if classes is None else np.asarray(classes)

    def predict(self, x: Array) -> Prediction:
        if self._classes is not None and self._proba:
            # One model call gives both outputs; labels follow the probabilities we report (argmax).
            proba = np.asarray(self._predict_proba(x))  # type: ignore[misc]
            return Prediction(self._classes[proba.argmax(axis=1)], proba)
        return Prediction(np.asarray(self._estimator.predict(x)).reshape(len(x)))


def _declared_names(estimator: Any) -> tuple[str, ...] | None:
    for attribute in ("feature_names_in_", "feature_names"):
        names = getattr(estimator, attribute, None)
        if names is not None:
            return tuple(str(name) for name in names)
    return None
