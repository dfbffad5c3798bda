"""Direct predict_proba for the most served scikit-learn classifiers, without sklearn's per-call checks.

scikit-learn validates every call (array conversion, dataframe detection, feature names): ~100 µs, which is
most of the cost of a one-row request to a linear model. The data plane has already checked that the input
is a finite 2-D array of the right width and dtype, so for these estimators we run the same arithmetic
sklearn runs after its checks. Results are identical to `estimator.predict_proba` (the tests compare them
on every row); any other estimator, or an unusual configuration of these, keeps the generic path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.utils.extmath import softmax

from modelserver.runtimes.base import Array


@dataclass(frozen=True, slots=True)
class DirectProba:
    predict_proba: Callable[[Array], Array]
    dtype: np.dtype[Any]


def direct_proba(estimator: Any) -> DirectProba | None:
    kind = type(estimator)
    if kind is LogisticRegression and _plain_logistic(estimator):
        return DirectProba(_logistic(estimator), np.dtype(np.float64))
    if kind in (RandomForestClassifier, ExtraTreesClassifier) and estimator.n_outputs_ == 1:
        # Trees compare float32 thresholds: sklearn casts input to float32, and so does the data plane.
        return DirectProba(_forest(estimator), np.dtype(np.float32))
    return None


def _plain_logistic(estimator: Any) -> bool:
    # One-vs-rest multiclass normalises differently; leave it (and anything sparse) to sklearn.
    multi_class = getattr(estimator, "multi_class", "auto")
    return isinstance(estimator.coef_, np.ndarray) and (len(estimator.classes_) <= 2 or multi_class != "ovr")


def _logistic(estimator: Any) -> Callable[[Array], Array]:
    coef_t = np.ascontiguousarray(estimator.coef_.T)
    intercept = estimator.intercept_
    binary = coef_t.shape[1] == 1

    def predict_proba(x: Array) -> Array:
        scores = x @ coef_t + intercept
        if binary:
            # sklearn's stack([1 - p, p], axis=1), written into one array: np.stack alone was ~3 µs a call.
            proba = np.empty((len(scores), 2))
            expit(scores[:, 0], out=proba[:, 1])
            np.subtract(1, proba[:, 1], out=proba[:, 0])
            return proba
        result: Array = softmax(scores, copy=False)
        return result

    return predict_proba


def _forest(estimator: Any) -> Callable[[Array], Array]:
    # The fitted trees' Cython objects; DecisionTreeClassifier.predict_proba is `tree_.predict(X)[:, :k]`
    # after its checks (sklearn >= 1.4 stores class fractions in the tree, so no normalisation follows).
    trees = [tree.tree_ for tree in estimator.estimators_]
    n_classes = int(estimator.n_classes_)

    def predict_proba(x: Array) -> Array:
        # sklearn's forest sums the trees' probabilities in this order, then divides once.
        total = np.zeros((len(x), n_classes), dtype=np.float64)
        for tree in trees:
            total += tree.predict(x)[:, :n_classes]
        total /= len(trees)
        return total

    return predict_proba
