"""The Triton HTTP client (tritonclient) talks to our server: health, metadata, JSON and binary tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.integration.modelserver.conftest import StartServer
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration


def test_tritonclient_against_a_classifier(tmp_path: Path, start_server: StartServer) -> None:
    built = builders.sklearn_logistic(tmp_path)
    server = start_server("--model-uri", str(built.path), "--model-name", "churn", "--model-version", "7")
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("churn", "7")
        assert not client.is_model_ready("churn", "8")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "model_repository"]
        metadata = client.get_model_metadata("churn")
        assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 20]}]

        x = built.x[:16]
        for binary_in in (True, False):
            tensor = triton.InferInput("input-0", list(x.shape), "FP64")
            tensor.set_data_from_numpy(x, binary_data=binary_in)
            # No outputs named: tritonclient asks for every output in binary form.
            result = client.infer("churn", [tensor], model_version="7")
            np.testing.assert_array_equal(result.as_numpy("predict"), built.estimator.predict(x))
            np.testing.assert_allclose(result.as_numpy("predict_proba"), built.estimator.predict_proba(x))

        json_out = [triton.InferRequestedOutput("predict_proba", binary_data=False)]
        result = client.infer("churn", [tensor], outputs=json_out)
        np.testing.assert_allclose(result.as_numpy("predict_proba"), built.estimator.predict_proba(x))
        assert result.as_numpy("predict") is None

        wrong = triton.InferInput("input-0", [2, 3], "FP32")
        wrong.set_data_from_numpy(np.zeros((2, 3), dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"this model takes \[rows, 20\]"):
            client.infer("churn", [wrong])
    finally:
        client.close()


def test_tritonclient_string_labels_in_binary(tmp_path: Path, start_server: StartServer) -> None:
    built = builders.sklearn_forest_iris(tmp_path)
    server = start_server("--model-uri", str(built.path), "--model-name", "iris")
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        tensor = triton.InferInput("input-0", [3, 4], "FP32")
        tensor.set_data_from_numpy(built.x[[0, 60, 120]].astype(np.float32))
        labels = client.infer("iris", [tensor]).as_numpy("predict")
        assert [v.decode() for v in labels] == built.estimator.predict(
            built.x[[0, 60, 120]].astype(np.float32)
        ).tolist()
    finally:
        client.close()
