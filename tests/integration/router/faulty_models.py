"""A custom model class for the router's failure tests, loaded by `modelserver serve --format custom`.

It takes the 20 features of the test classifier, so the same request body reaches it in place of that model.
A row whose first feature is SLOW_MARK is answered (class 1) after SLOW_MODEL_S seconds (default 1); any other
request fails, and the model server answers 500. Serve it with MODELSERVER_WARMUP=false.
"""

from __future__ import annotations

import os
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
