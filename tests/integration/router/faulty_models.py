"""Custom model classes for the router's failure tests, loaded by `modelserver serve --format custom`.

They take the 20 features of the test classifier, so the same request body reaches them in place of that model.
- Faulty: a row whose first feature is SLOW_MARK is answered (class 1) after SLOW_MODEL_S seconds (default 1); any
  other request fails, and the model server answers 500.
- Flaky: fails a request with probability FAIL_SHARE (default 0.3), drawn per request from a generator seeded by
  FAIL_SEED, and answers class 1 otherwise.
Serve them with MODELSERVER_WARMUP=false.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np

N_FEATURES = 20
SLOW_MARK = 4242.0


class Faulty:
    n_features_in_ = N_FEATURES

    def __init__(self) -> None:
        self.delay = float(os.environ.get("SLOW_MODEL_S", "1"))

    def predict(self, x: Any) -> Any:
        if len(x) and x[0, 0] == SLOW_MARK:
            time.sleep(self.delay)
            return np.ones(len(x), dtype=np.int64)
        raise RuntimeError("this model fails")


class Flaky:
    n_features_in_ = N_FEATURES

    def __init__(self) -> None:
        self.share = float(os.environ.get("FAIL_SHARE", "0.3"))
        self.draw = random.Random(int(os.environ.get("FAIL_SEED", "7"))).random

    def predict(self, x: Any) -> Any:
        if self.draw() < self.share:
            raise RuntimeError("this model fails a share of its calls")
        return np.ones(len(x), dtype=np.int64)
