"""scikit-learn runtime: estimators and pipelines saved with joblib or pickle."""

from __future__ import annotations

import warnings
from pathlib import Path

import joblib
import sklearn

from modelserver.runtimes.base import LoadOptions, Model, require_file
from modelserver.runtimes.estimator import EstimatorModel
from modelserver.runtimes.sklearn_direct import direct_proba


def load(path: Path | None, options: LoadOptions) -> Model:
    # joblib.load reads plain pickles too. Both execute code from the file: serve only models you trust.
    estimator = joblib.load(require_file(path, "sklearn"))
    # The data plane has already rejected non-finite input, so skip sklearn's per-call finiteness scan.
    sklearn.set_config(assume_finite=True)
    # Estimators fitted on DataFrames warn on every ndarray call; the data plane orders columns by name.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    if hasattr(estimator, "n_jobs"):
        # Forests would otherwise fan out per call; the server scales with worker processes instead.
        estimator.n_jobs = options.threads
    direct = direct_proba(estimator)
    if direct is None:
        return EstimatorModel(estimator, options)
    return EstimatorModel(estimator, options, dtype=direct.dtype, predict_proba=direct.predict_proba)
