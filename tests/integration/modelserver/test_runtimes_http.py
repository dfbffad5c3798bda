"""Every runtime served by a real server process, called over HTTP, answering what the library answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost

from tests.integration.modelserver.conftest import StartServer
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration


def expected_for(name: str, built: builders.Built, x: np.ndarray[Any, Any]) -> tuple[list[Any], Any]:
    """(labels or values, probabilities or None) straight from the training library."""
    if name.startswith("sklearn") or name.startswith("onnx"):
        estimator = built.estimator
        probabilities = estimator.predict_proba(x) if hasattr(estimator, "predict_proba") else None
        return estimator.predict(x).tolist(), probabilities
    if name == "xgboost":
        p = built.estimator.predict(xgboost.DMatrix(x.astype(np.float32), feature_names=[f"x{i}" for i in range(20)]))
        return (p >= 0.5).astype(int).tolist(), np.column_stack([1 - p, p])
    p = built.estimator.predict(x)
    return (p >= 0.5).astype(int).tolist(), np.column_stack([1 - p, p])


RUNTIMES: dict[str, Callable[[Path], builders.Built]] = {
    "sklearn": builders.sklearn_logistic,
    "sklearn-iris": builders.sklearn_forest_iris,
    "sklearn-regressor": builders.sklearn_regressor,
    "onnx": builders.onnx_logistic,
    "xgboost": builders.xgboost_binary,
    "lightgbm": builders.lightgbm_binary,
}


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_runtime_over_http(runtime: str, tmp_path: Path, start_server: StartServer) -> None:
    built = RUNTIMES[runtime](tmp_path)
    server = start_server("--model-uri", str(built.path), "--model-name", "m", "--model-version", "3")
    metadata = server.client.get("/v2/models/m/versions/3").json()
    names = metadata["parameters"]["feature_names"]
    assert metadata["inputs"][0]["shape"] == [-1, built.x.shape[1]]
    assert len(names) == built.x.shape[1]

    x = built.x[:8]
    labels, probabilities = expected_for(runtime, built, x)
    datatype = metadata["inputs"][0]["datatype"]
    request = {"inputs": [{"name": "input-0", "shape": list(x.shape), "datatype": datatype, "data": x.tolist()}]}
    response = server.client.post("/v2/models/m/infer", json=request)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    if isinstance(labels[0], float):
        np.testing.assert_allclose(outputs["predict"]["data"], labels, rtol=1e-4)
    else:
        assert outputs["predict"]["data"] == labels
    if probabilities is not None:
        assert outputs["predict_proba"]["shape"] == list(probabilities.shape)
        np.testing.assert_allclose(
            np.reshape(outputs["predict_proba"]["data"], probabilities.shape), probabilities, atol=1e-5
        )

    records = [dict(zip(names, row, strict=True)) for row in x.tolist()]
    predicted = server.client.post("/predict", json=records)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == outputs["predict"]["data"]


def test_custom_class_over_http(tmp_path: Path, start_server: StartServer, custom_env: dict[str, str]) -> None:
    config = tmp_path / "limit.json"
    config.write_text(json.dumps({"limit": 3.0}))
    server = start_server(
        "--model-uri", str(config), "--format", "custom", "--model-class",
        f"{builders.CUSTOM_MODULE}:Thresholder", "--model-name", "rules", env=custom_env,
    )  # fmt: skip
    response = server.client.post("/predict", json=[{"a": 0, "b": 0}, {"a": 1, "b": 2}])
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == ["low", "high"]
    assert server.client.post("/predict?threshold=0.999", json={"a": 1, "b": 2}).json()["predictions"] == ["low"]
    missing = server.client.post("/predict", json={"a": 1})
    assert missing.status_code == 400
    assert "missing features: b" in missing.json()["error"]
