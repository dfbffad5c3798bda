"""`/metrics` after real traffic: names and label sets exactly as DESIGN.md section 4, and counts that add up
across several worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.modelserver.conftest import StartServer
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration

# DESIGN.md section 4: the contract the operator's builtin queries rely on.
DESIGN_LABELS = {
    "modelserver_requests": ("counter", {"model", "version", "protocol", "code"}),
    "modelserver_request_duration_seconds": ("histogram", {"model", "version", "protocol"}),
    "modelserver_inference_errors": ("counter", {"model", "version", "reason"}),
    "modelserver_batch_size": ("histogram", {"model", "version"}),
    "modelserver_predictions": ("counter", {"model", "version", "label"}),
    "modelserver_prediction_value": ("histogram", {"model", "version"}),
}


def scrape(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.text) if f.name.startswith("modelserver_")}


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for s in families[family].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def row(built: builders.Built, i: int) -> dict[str, float]:
    return {f"f{j}": float(v) for j, v in enumerate(built.x[i])}


@pytest.mark.parametrize("workers", [1, 2])
def test_metric_names_labels_and_counts(tmp_path: Path, start_server: StartServer, workers: int) -> None:
    built = builders.sklearn_logistic(tmp_path)
    args = ["--model-uri", str(built.path), "--model-name", "churn", "--model-version", "7"]
    # With two workers the server makes its own PROMETHEUS_MULTIPROC_DIR, as it does for users.
    server = start_server(*args, "--workers", str(workers), "--batching")
    ok, bad = 30, 5
    for i in range(ok):
        # A fresh connection per request, so with two workers the kernel spreads them over both.
        with httpx.Client(base_url=server.url) as client:
            assert client.post("/predict", json=row(built, i)).status_code == 200
    for _ in range(bad):
        with httpx.Client(base_url=server.url) as client:
            assert client.post("/predict", content=b"{not json").status_code == 400
    expected_labels = built.estimator.predict(built.x[:ok]).tolist()

    families = scrape(server.client)
    for name, (kind, labels) in DESIGN_LABELS.items():
        if name == "modelserver_prediction_value":
            continue  # regressors only: checked below
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
            assert (sample.labels["model"], sample.labels["version"]) == ("churn", "7")

    common = {"model": "churn", "version": "7"}
    requests = "modelserver_requests"
    assert value(families, requests, "modelserver_requests_total", **common, protocol="predict", code="200") == ok
    assert value(families, requests, "modelserver_requests_total", **common, protocol="predict", code="400") == bad
    errors = "modelserver_inference_errors"
    assert value(families, errors, "modelserver_inference_errors_total", **common, reason="malformed") == bad
    duration = "modelserver_request_duration_seconds"
    assert value(families, duration, f"{duration}_count", **common, protocol="predict") == ok + bad
    for label in (0, 1):
        counted = value(families, "modelserver_predictions", "modelserver_predictions_total", label=str(label))
        assert counted == expected_labels.count(label)
    assert value(families, "modelserver_batch_size", "modelserver_batch_size_sum", **common) == ok


def test_regressor_values(tmp_path: Path, start_server: StartServer) -> None:
    built = builders.sklearn_regressor(tmp_path)
    server = start_server("--model-uri", str(built.path), "--model-name", "d")
    x = built.x[:6]
    records = [{f"f{j}": float(v) for j, v in enumerate(r)} for r in x]
    assert server.client.post("/predict", json=records).status_code == 200
    families = scrape(server.client)
    histogram = families["modelserver_prediction_value"]
    assert histogram.type == "histogram"
    assert {frozenset(s.labels) - {"le"} for s in histogram.samples} == {frozenset({"model", "version"})}
    assert value(families, "modelserver_prediction_value", "modelserver_prediction_value_count") == 6
    total = value(families, "modelserver_prediction_value", "modelserver_prediction_value_sum")
    assert total == pytest.approx(float(built.estimator.predict(x).sum()))
