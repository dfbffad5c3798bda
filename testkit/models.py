"""Small real models trained on the spot (under a second) from datasets scikit-learn ships, saved with joblib.

Classifiers (breast cancer, 569 rows x 30 features, labels 0/1):
- `stable`: scaler + logistic regression.
- `healthy`: the same retrained with stronger regularisation: a different answer on 4 of the 569 rows (99.3%
  agreement; at least 99% is checked).
- `disagreeing`: a decision tree fitted to labels flipped on the rows above the median of feature 0, so it
  answers differently from `stable` on a large share of rows (about half; `disagreement(...)` is exact).
- `slow(ms)` / `failing(share)`: `stable`'s file served through testkit/faulty.py's custom classes.
Regressors (diabetes, 442 rows x 10 features): `stable` (ridge), `close` (ridge, slightly different alpha) and
`shifted` (ridge fitted to y + SHIFT, so every prediction is exactly SHIFT higher: mean |diff| = SHIFT).

Each model also carries its predictions on the dataset's rows, which are what the load generator sends, so
tests know the expected agreement of any pair without asking a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from testkit.faulty import FAILING_MODEL, FAILURE_SHARE_ENV, LATENCY_ENV, SLOW_MODEL

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIFT = 25.0
MIN_HEALTHY_AGREEMENT = 0.99
MIN_DISAGREEMENT = 0.30


@dataclass(frozen=True)
class Dataset:
    """The rows a load generator sends (float64, [rows, features]) and what the model server calls them."""

    name: str
    rows: np.ndarray[Any, np.dtype[np.float64]]

    @property
    def n_features(self) -> int:
        return int(self.rows.shape[1])

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class ModelArtifact:
    """What a model server needs to serve one model (URI, format, custom class, extra env) and the model's
    predictions on the dataset's rows."""

    label: str
    path: Path
    predictions: tuple[float, ...]
    model_format: str = "sklearn"
    model_class: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def server_env(self) -> dict[str, str]:
        """MODELSERVER_* settings (URI, format, class) plus the artifact's own env; name/version are the caller's."""
        env = {"MODELSERVER_MODEL_URI": str(self.path), "MODELSERVER_MODEL_FORMAT": self.model_format, **self.env}
        if self.model_class is not None:
            env["MODELSERVER_MODEL_CLASS"] = self.model_class
        return env


def agreement(a: ModelArtifact, b: ModelArtifact) -> float:
    """Share of the dataset's rows on which two classifiers give the same label."""
    return float(np.mean(np.asarray(a.predictions) == np.asarray(b.predictions)))


def disagreement(a: ModelArtifact, b: ModelArtifact) -> float:
    return 1 - agreement(a, b)


def mean_abs_diff(a: ModelArtifact, b: ModelArtifact) -> float:
    return float(np.mean(np.abs(np.asarray(a.predictions) - np.asarray(b.predictions))))


def _custom(base: ModelArtifact, *, label: str, model_class: str, env: Mapping[str, str]) -> ModelArtifact:
    # The model server imports the class as testkit.faulty:..., so the repo root must be importable.
    pythonpath = {"PYTHONPATH": str(REPO_ROOT)}
    return replace(base, label=label, model_format="custom", model_class=model_class, env={**pythonpath, **env})


@dataclass(frozen=True)
class Classifiers:
    dataset: Dataset
    stable: ModelArtifact
    healthy: ModelArtifact
    disagreeing: ModelArtifact

    def slow(self, latency_ms: float, *, base: ModelArtifact | None = None) -> ModelArtifact:
        """`base` (default stable) answering `latency_ms` later on every model call."""
        base = base or self.stable
        return _custom(base, label=f"{base.label}-slow", model_class=SLOW_MODEL, env={LATENCY_ENV: f"{latency_ms:g}"})

    def failing(self, share: float, *, base: ModelArtifact | None = None) -> ModelArtifact:
        """`base` (default stable) failing `share` of its model calls (HTTP 500), evenly spread."""
        base = base or self.stable
        return _custom(
            base, label=f"{base.label}-failing", model_class=FAILING_MODEL, env={FAILURE_SHARE_ENV: f"{share:g}"}
        )


@dataclass(frozen=True)
class Regressors:
    dataset: Dataset
    stable: ModelArtifact
    close: ModelArtifact
    shifted: ModelArtifact  # every prediction exactly SHIFT above stable's


def _save(directory: Path, label: str, estimator: Any, rows: np.ndarray[Any, Any]) -> ModelArtifact:
    path = directory / f"{label}.joblib"
    joblib.dump(estimator, path)
    predictions = tuple(float(p) for p in estimator.predict(rows))
    return ModelArtifact(label=label, path=path, predictions=predictions)


def _check(what: str, value: float, *, at_least: float) -> None:
    if value < at_least:
        raise AssertionError(f"training drifted: {what} is {value:.3f}, the tests assume at least {at_least}")


def train_classifiers(directory: Path) -> Classifiers:
    directory.mkdir(parents=True, exist_ok=True)
    x, y = load_breast_cancer(return_X_y=True)
    x = np.ascontiguousarray(x, dtype=np.float64)
    stable = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x, y)
    healthy = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)).fit(x, y)
    flipped = np.where(x[:, 0] > np.median(x[:, 0]), 1 - y, y)
    disagreeing = DecisionTreeClassifier(random_state=0).fit(x, flipped)
    models = Classifiers(
        dataset=Dataset(name="breast_cancer", rows=x),
        stable=_save(directory, "stable", stable, x),
        healthy=_save(directory, "healthy", healthy, x),
        disagreeing=_save(directory, "disagreeing", disagreeing, x),
    )
    _check("healthy's agreement with stable", agreement(models.stable, models.healthy), at_least=MIN_HEALTHY_AGREEMENT)
    _check("disagreeing's disagreement", disagreement(models.stable, models.disagreeing), at_least=MIN_DISAGREEMENT)
    return models


def train_regressors(directory: Path) -> Regressors:
    directory.mkdir(parents=True, exist_ok=True)
    x, y = load_diabetes(return_X_y=True)
    x = np.ascontiguousarray(x, dtype=np.float64)
    return Regressors(
        dataset=Dataset(name="diabetes", rows=x),
        stable=_save(directory, "stable-regressor", Ridge(alpha=1.0).fit(x, y), x),
        close=_save(directory, "close-regressor", Ridge(alpha=1.05).fit(x, y), x),
        shifted=_save(directory, "shifted-regressor", Ridge(alpha=1.0).fit(x, y + SHIFT), x),
    )


def rows_as_lists(dataset: Dataset, indices: Sequence[int]) -> list[list[float]]:
    return [[float(v) for v in dataset.rows[i]] for i in indices]
