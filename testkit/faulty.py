"""Fault-injecting models for the model server's custom runtime (MODELSERVER_MODEL_FORMAT=custom).

The server imports these as `testkit.faulty:SlowModel` / `testkit.faulty:FailingModel` (PYTHONPATH = the
repo root) and constructs them with the model path: a joblib-saved scikit-learn estimator, whose answers they
give unchanged apart from the fault. Settings come from the server's environment, read once at construction:

- SlowModel: LATENCY_ENV milliseconds of sleep per model call. The model server calls the model on its event
  loop, so one worker serves at most 1000/N calls per second; above that, requests queue and latency grows.
- FailingModel: FAILURE_SHARE_ENV (0..1) of model calls raise, spread evenly and deterministically (a share of
  0.25 fails exactly every 4th call). The server answers those with HTTP 500 (ModelFailed, reason
  model_error). Calls on all-zero input never fail: that is the server's warm-up, which must succeed for the
  server to start at all.

Only the standard library, numpy and joblib are imported here: this module runs inside the model server.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np

LATENCY_ENV = "MODELROLLOUT_E2E_LATENCY_MS"
FAILURE_SHARE_ENV = "MODELROLLOUT_E2E_FAILURE_SHARE"
SLOW_MODEL = "testkit.faulty:SlowModel"
FAILING_MODEL = "testkit.faulty:FailingModel"


class InjectedFailure(RuntimeError):
    """What FailingModel raises."""


class _Wrapped:
    """The scikit-learn estimator API of the wrapped model (what the custom runtime's adapter reads)."""

    def __init__(self, path: Path | str) -> None:
        self._inner: Any = joblib.load(path)
        self.n_features_in_ = int(self._inner.n_features_in_)
        classes = getattr(self._inner, "classes_", None)
        if classes is not None:
            self.classes_ = np.asarray(classes)
        if hasattr(self._inner, "predict_proba"):  # only then, so that regressors stay regressors
            self.predict_proba = self._predict_proba
        self.calls = 0

    def _fault(self, x: Any) -> None:
        raise NotImplementedError

    def predict(self, x: Any) -> Any:
        self._fault(x)
        return self._inner.predict(x)

    def _predict_proba(self, x: Any) -> Any:
        self._fault(x)
        return self._inner.predict_proba(x)


class SlowModel(_Wrapped):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        self.latency_s = float(os.environ.get(LATENCY_ENV, "0")) / 1000

    def _fault(self, x: Any) -> None:
        self.calls += 1
        time.sleep(self.latency_s)


class FailingModel(_Wrapped):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        self.share = float(os.environ.get(FAILURE_SHARE_ENV, "0"))
        if not 0 <= self.share <= 1:
            raise ValueError(f"{FAILURE_SHARE_ENV} must be within 0..1, got {self.share}")
        self._owed = 0.0
        self.failed = 0

    def _fault(self, x: Any) -> None:
        if not np.any(x):
            return  # the server's warm-up
        self.calls += 1
        self._owed += self.share
        if self._owed >= 1 - 1e-9:
            self._owed -= 1
            self.failed += 1
            raise InjectedFailure(f"injected failure {self.failed} of {self.calls} calls (share {self.share:g})")
