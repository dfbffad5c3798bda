"""A classifier that takes DELAY_MS milliseconds a call, for the ensemble benchmark (`modelserver serve --format custom
--model-class delayed_model:Delayed --model-uri model.joblib`): the scikit-learn model in the file, whose
predict_proba waits DELAY_MS first, as a model whose time is spent waiting (a feature lookup, a remote call) rather
than computing. The members of a benchmarked ensemble then answer in distinct known times while sharing a core."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import joblib


class Delayed:
    def __init__(self, path: Path) -> None:
        self.model = joblib.load(path)
        self.delay_s = float(os.environ.get("DELAY_MS", "0")) / 1000
        self.classes_ = self.model.classes_
        self.n_features_in_ = self.model.n_features_in_

    def predict(self, x: Any) -> Any:
        return self.model.predict(x)

    def predict_proba(self, x: Any) -> Any:  # the one call a classifier's request makes (runtimes.estimator)
        time.sleep(self.delay_s)
        return self.model.predict_proba(x)
