"""The load/predict contract every runtime implements, and the signature derived at load time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Task = Literal["classification", "regression"]
Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Signature:
    """What the model takes and gives; requests are validated against it before the model sees them."""

    feature_names: tuple[str, ...]
    dtype: np.dtype[Any]
    task: Task
    classes: tuple[Any, ...] | None = None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


@dataclass(frozen=True, slots=True)
class Prediction:
    """`values`: one label (classifier) or number (regressor) per row; `probabilities`: rows x classes."""

    values: Array
    probabilities: Array | None = None

    def rows(self, start: int, stop: int) -> Prediction:
        proba = None if self.probabilities is None else self.probabilities[start:stop]
        return Prediction(self.values[start:stop], proba)


class Model(Protocol):
    @property
    def signature(self) -> Signature: ...

    def predict(self, x: Array) -> Prediction:
        """`x` is a finite 2-D array of `signature.dtype` with `signature.n_features` columns."""
        ...


@dataclass(frozen=True, slots=True)
class LoadOptions:
    feature_names: tuple[str, ...] | None = None
    threads: int = 1
    model_class: str | None = None


class Loader(Protocol):
    def __call__(self, path: Path | None, options: LoadOptions) -> Model: ...


def resolve_feature_names(
    derived: tuple[str, ...] | None, n_features: int | None, override: tuple[str, ...] | None
) -> tuple[str, ...]:
    """Names from the model if it has them; the operator's override must agree with the model's width."""
    if override is not None:
        width = len(derived) if derived is not None else n_features
        if width is not None and width != len(override):
            raise ValueError(f"feature_names lists {len(override)} names but the model takes {width} features")
        return override
    if derived is not None:
        return derived
    if n_features is None:
        raise ValueError("cannot tell how many features the model takes; set feature_names")
    return tuple(f"f{i}" for i in range(n_features))


def labels_from_probabilities(probabilities: Array, classes: tuple[Any, ...]) -> Array:
    labels: Array = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    return labels


def derive_signature(
    *,
    names: tuple[str, ...] | None,
    width: int | None,
    options: LoadOptions,
    dtype: Any,
    classes: tuple[Any, ...] | None,
) -> Signature:
    return Signature(
        feature_names=resolve_feature_names(names, width, options.feature_names),
        dtype=np.dtype(dtype),
        task="classification" if classes is not None else "regression",
        classes=classes,
    )


def from_scores(raw: Array, rows: int, classes: tuple[Any, ...] | None, *, binary: bool) -> Prediction:
    """Booster outputs: values (regressors), the positive class's probability (binary) or rows x classes."""
    if classes is None:
        return Prediction(raw.reshape(rows))
    proba = np.column_stack([1.0 - raw, raw]) if binary else raw.reshape(rows, len(classes))
    return Prediction(labels_from_probabilities(proba, classes), proba)


def require_file(path: Path | None, runtime: str) -> Path:
    if path is None:
        raise ValueError(f"the {runtime} runtime needs a model file")
    return path


class SignedModel:
    """Holds the signature derived at load time; runtimes subclass it and add predict()."""

    _signature: Signature

    @property
    def signature(self) -> Signature:
        return self._signature
