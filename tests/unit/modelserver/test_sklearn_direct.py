"""The direct predict_proba paths give exactly what scikit-learn's own predict_proba gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelserver.runtimes.sklearn_direct import direct_proba

BINARY = make_classification(n_samples=600, n_features=12, n_informative=5, random_state=3)
IRIS = load_iris(return_X_y=True)


@pytest.mark.parametrize(
    ("estimator", "data", "dtype"),
    [
        (LogisticRegression(max_iter=1000), BINARY, np.float64),
        (LogisticRegression(max_iter=1000), IRIS, np.float64),
        (RandomForestClassifier(n_estimators=15, random_state=0), BINARY, np.float32),
        (RandomForestClassifier(n_estimators=15, random_state=0), IRIS, np.float32),
        (ExtraTreesClassifier(n_estimators=15, random_state=0), IRIS, np.float32),
    ],
)
def test_identical_to_sklearn(estimator: Any, data: tuple[Any, Any], dtype: type) -> None:
    x, y = data
    estimator.fit(x, y)
    direct = direct_proba(estimator)
    assert direct is not None
    assert direct.dtype == dtype
    rng = np.random.default_rng(0)
    probes = np.vstack([x, rng.normal(size=(200, x.shape[1])) * 3])
    np.testing.assert_array_equal(direct.predict_proba(probes.astype(dtype)), estimator.predict_proba(probes))
    np.testing.assert_array_equal(direct.predict_proba(probes[:1].astype(dtype)), estimator.predict_proba(probes[:1]))


@pytest.mark.parametrize(
    "estimator",
    [
        GradientBoostingClassifier(n_estimators=5),
        make_pipeline(StandardScaler(), LogisticRegression()),
    ],
)
def test_other_estimators_keep_the_generic_path(estimator: Any) -> None:
    estimator.fit(*IRIS)
    assert direct_proba(estimator) is None
