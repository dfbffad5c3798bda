"""Models trained on the spot from data that scikit-learn ships or generates, saved in each runtime's format.

Every builder returns the saved file and the features it was trained on, so tests can compare the server's
answers with the library's own predictions on the same rows.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np
import xgboost
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

N_FEATURES = 20


@dataclass(frozen=True)
class Built:
    path: Path
    x: np.ndarray[Any, Any]
    estimator: Any = None


def binary_data(n_features: int = N_FEATURES) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return make_classification(n_samples=400, n_features=n_features, n_informative=6, random_state=7)


def sklearn_logistic(directory: Path, name: str = "model.joblib") -> Built:
    x, y = binary_data()
    estimator = LogisticRegression(max_iter=1000).fit(x, y)
    path = directory / name
    joblib.dump(estimator, path)
    return Built(path, x, estimator)


def sklearn_forest_iris(directory: Path) -> Built:
    """Multiclass with string labels, so label outputs are BYTES tensors."""
    iris = load_iris()
    labels = np.asarray(iris.target_names)[iris.target]
    estimator = RandomForestClassifier(n_estimators=20, random_state=0).fit(iris.data, labels)
    path = directory / "iris.pkl"
    joblib.dump(estimator, path)
    return Built(path, iris.data, estimator)


def sklearn_regressor(directory: Path) -> Built:
    x, y = load_diabetes(return_X_y=True)
    estimator = LinearRegression().fit(x, y)
    path = directory / "diabetes.joblib"
    joblib.dump(estimator, path)
    return Built(path, x, estimator)


def onnx_logistic(directory: Path, *, zipmap: bool = False) -> Built:

    x, y = binary_data()
    estimator = LogisticRegression(max_iter=1000).fit(x, y)
    options = {id(estimator): {"zipmap": zipmap}}
    proto = to_onnx(estimator, x[:1].astype(np.float32), options=options, target_opset=17)
    path = directory / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    return Built(path, x, estimator)


def onnx_regressor(directory: Path) -> Built:

    x, y = load_diabetes(return_X_y=True)
    estimator = LinearRegression().fit(x, y)
    proto = to_onnx(estimator, x[:1].astype(np.float32), target_opset=17)
    path = directory / "regressor.onnx"
    path.write_bytes(proto.SerializeToString())
    return Built(path, x, estimator)


def xgboost_binary(directory: Path) -> Built:

    x, y = binary_data()
    names = [f"x{i}" for i in range(x.shape[1])]
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgboost.DMatrix(x, label=y, feature_names=names),
        num_boost_round=20,
    )
    path = directory / "model.ubj"
    booster.save_model(str(path))
    return Built(path, x, booster)


def xgboost_multiclass(directory: Path) -> Built:

    iris = load_iris()
    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1},
        xgboost.DMatrix(iris.data, label=iris.target),
        num_boost_round=10,
    )
    path = directory / "iris.json"
    booster.save_model(str(path))
    return Built(path, iris.data, booster)


def lightgbm_binary(directory: Path) -> Built:

    x, y = binary_data()
    names = [f"col_{i}" for i in range(x.shape[1])]
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lightgbm.Dataset(x, label=y, feature_name=names),
        num_boost_round=20,
    )
    path = directory / "model.txt"
    booster.save_model(str(path))
    return Built(path, x, booster)


def lightgbm_regressor(directory: Path) -> Built:

    x, y = load_diabetes(return_X_y=True)
    booster = lightgbm.train(
        {"objective": "regression", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5},
        lightgbm.Dataset(x, label=y),
        num_boost_round=20,
    )
    path = directory / "regressor.lgb"
    booster.save_model(str(path))
    return Built(path, x, booster)


CUSTOM_MODULE = "ms_custom_models"


def custom_module(directory: Path) -> Path:
    """A module of user classes for the custom runtime; put `directory` on sys.path / PYTHONPATH to use it."""
    source = '''
        import json
        import os
        import time
        from pathlib import Path

        import numpy as np


        class Thresholder:
            """Binary classifier over named features: class 'high' when a + 2*b > limit (limit from the file)."""

            feature_names = ("a", "b")
            classes_ = np.array(["low", "high"])

            def __init__(self, path=None):
                self.limit = json.loads(Path(path).read_text())["limit"] if path else 1.0

            def predict_proba(self, x):
                score = 1.0 / (1.0 + np.exp(-(x[:, 0] + 2 * x[:, 1] - self.limit)))
                return np.column_stack([1.0 - score, score])

            def predict(self, x):
                return self.classes_[(self.predict_proba(x)[:, 1] >= 0.5).astype(int)]


        class SlowDoubler:
            """Regressor that sleeps per call and marks that it started, for shutdown and batching tests."""

            n_features_in_ = 3

            def __init__(self):
                self.delay = float(os.environ.get("SLOW_MODEL_DELAY", "0"))
                self.marker = os.environ.get("SLOW_MODEL_MARKER")

            def predict(self, x):
                if self.marker and len(x) == 1 and x[0, 0] == 42:
                    Path(self.marker).write_text("started")
                time.sleep(self.delay)
                return 2 * x.sum(axis=1)


        class Broken:
            """Fails on load: the server must refuse to start."""

            def __init__(self):
                raise RuntimeError("this model cannot be built")
    '''
    (directory / f"{CUSTOM_MODULE}.py").write_text(textwrap.dedent(source))
    return directory
