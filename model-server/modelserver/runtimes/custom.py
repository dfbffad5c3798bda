"""Custom runtime: a user class named by import path ('package.module:Class').

The class is constructed with the fetched model path (or no argument when no URI is given) and must offer
the scikit-learn estimator API: `predict(X)`, plus `classes_` and `predict_proba(X)` for classifiers, and
`feature_names` / `feature_names_in_` or `n_features_in_` so the signature can be derived.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from modelserver.runtimes.base import LoadOptions, Model
from modelserver.runtimes.estimator import EstimatorModel


def load(path: Path | None, options: LoadOptions) -> Model:
    if not options.model_class:
        raise ValueError("the custom runtime needs model_class ('package.module:Class')")
    cls = import_object(options.model_class)
    instance = cls(path) if path is not None else cls()
    return EstimatorModel(instance, options)


def import_object(spec: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep:
        module_name, _, attribute = spec.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"model_class {spec!r} is not 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for model_class {spec!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
