"""Adaptive batching in a real server: concurrent single-record requests share model calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.modelserver.conftest import StartServer
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration


def test_concurrent_requests_are_batched(tmp_path: Path, start_server: StartServer, custom_env: dict[str, str]) -> None:
    # Each model call takes 0.3 s and blocks the event loop, so requests sent meanwhile queue up together.
    env = {**custom_env, "SLOW_MODEL_DELAY": "0.3"}
    model = ["--format", "custom", "--model-class", f"{builders.CUSTOM_MODULE}:SlowDoubler", "--model-name", "s"]
    server = start_server(*model, "--batching", "--max-batch-size", "16", env=env)
    concurrent = 12

    def call(i: int) -> float:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.post("/predict", json={"f0": i, "f1": 0, "f2": 0})
            assert response.status_code == 200, response.text
            prediction: float = response.json()["predictions"][0]
            return prediction

    with ThreadPoolExecutor(concurrent) as pool:
        answers = list(pool.map(call, range(concurrent)))
    assert answers == [2.0 * i for i in range(concurrent)]  # each caller got its own row back

    metrics = server.client.get("/metrics").text
    (family,) = [f for f in text_string_to_metric_families(metrics) if f.name == "modelserver_batch_size"]
    samples = {s.name: s.value for s in family.samples if not s.name.endswith("_bucket")}
    # Warm-up calls the model directly, outside the batcher, so every counted row is one of ours.
    assert samples["modelserver_batch_size_sum"] == concurrent
    assert samples["modelserver_batch_size_count"] < concurrent
