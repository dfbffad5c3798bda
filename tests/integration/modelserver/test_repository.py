"""Many models in one real `modelserver serve --model-repository` process: the Open Inference Protocol per model and
version over REST and gRPC (tritonclient), the repository extension (index, load, unload: tritonclient.http's
model-control calls) without a restart, per-model metrics, /predict naming its model, and a model refused by the
memory bound with the sizes."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.integration.modelserver.conftest import StartServer
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration

GIB = 1024**3


def model_dir(root: Path, directory: str, name: str, version: str, build: Any) -> Any:
    folder = root / directory
    folder.mkdir(parents=True)
    built = build(folder)
    settings = {"name": name, "version": version, "uri": built.path.name, "format": "sklearn"}
    (folder / "model-settings.json").write_text(json.dumps(settings))
    return built


def requests_of(text: str, model: str) -> dict[tuple[str, str, str], float]:
    """modelserver_requests_total of `model` by (version, protocol, code), the series at 0 left out."""
    return {
        (s.labels["version"], s.labels["protocol"], s.labels["code"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelserver_requests_total" and s.labels["model"] == model and s.value
    }


def infer(client: triton.InferenceServerClient, name: str, x: np.ndarray[Any, Any], version: str = "") -> Any:
    tensor = triton.InferInput("input-0", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    return client.infer(name, [tensor], model_version=version)


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, Any]:
    """churn versions 1 and 2, iris: a repository directory and what each model was built from."""
    root = tmp_path / "models"
    return {
        "root": root,
        "churn1": model_dir(root, "churn/1", "churn", "1", builders.sklearn_logistic),
        "churn2": model_dir(root, "churn/2", "churn", "2", lambda d: builders.sklearn_logistic(d, "other.joblib")),
        "iris": model_dir(root, "iris", "iris", "1", builders.sklearn_forest_iris),
    }


def test_every_model_and_version_is_served_over_rest_and_grpc(repo: dict[str, Any], start_server: StartServer) -> None:
    churn1, churn2, iris = repo["churn1"], repo["churn2"], repo["iris"]
    server = start_server("--model-repository", str(repo["root"]))
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        index = client.get_model_repository_index()
        assert [(m["name"], m["version"], m["state"]) for m in index] == [
            ("churn", "1", "READY"), ("churn", "2", "READY"), ("iris", "1", "READY")
        ]  # fmt: skip
        x = churn1.x[:8]
        default = infer(client, "churn", x)  # the highest version
        assert default.get_response()["model_version"] == "2"
        np.testing.assert_allclose(default.as_numpy("predict_proba"), churn2.estimator.predict_proba(x))
        first = infer(client, "churn", x, version="1")
        np.testing.assert_allclose(first.as_numpy("predict_proba"), churn1.estimator.predict_proba(x))
        flowers = iris.x[[0, 60, 120]]
        labels = [v.decode() for v in infer(client, "iris", flowers).as_numpy("predict")]
        assert labels == iris.estimator.predict(flowers).tolist()
        # gRPC reaches every model of the repository alike.
        tensor = triton_grpc.InferInput("input-0", list(flowers.shape), "FP64")
        tensor.set_data_from_numpy(flowers)
        by_grpc = grpc_client.infer("iris", [tensor])
        assert [v.decode() for v in by_grpc.as_numpy("predict")] == iris.estimator.predict(flowers).tolist()
        with pytest.raises(InferenceServerException, match="model nope is not served here"):
            grpc_client.infer("nope", [tensor])
        several = server.client.post("/predict", json={f"f{i}": 0.0 for i in range(4)})
        assert several.status_code == 400
        assert "serves several models (churn, iris): name one, as /predict?model=NAME" in several.json()["error"]
        record = {f"f{i}": value for i, value in enumerate(flowers[0].tolist())}
        named = server.client.post("/predict", params={"model": "iris"}, json=record)
        assert named.status_code == 200, named.text
        text = server.client.get("/metrics").text
        iris_requests = {("1", "v2", "200"): 1, ("1", "grpc", "200"): 1, ("1", "predict", "200"): 1}
        assert requests_of(text, "iris") == iris_requests
        assert requests_of(text, "churn") == {("1", "v2", "200"): 1, ("2", "v2", "200"): 1}  # labelled per version
    finally:
        client.close()
        grpc_client.close()


def test_models_are_loaded_and_unloaded_without_a_restart(repo: dict[str, Any], start_server: StartServer) -> None:
    root, iris = repo["root"], repo["iris"]
    server = start_server("--model-repository", str(root), "--max-memory-bytes", str(GIB))
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    flowers = iris.x[[0, 60, 120]]
    try:
        infer(client, "iris", flowers)
        client.unload_model("iris")
        assert not client.is_model_ready("iris")
        with pytest.raises(InferenceServerException, match="model iris is not served here"):
            infer(client, "iris", flowers)
        assert requests_of(server.client.get("/metrics").text, "iris") == {}  # its series left with it
        client.load_model("iris")
        assert client.is_model_ready("iris")
        fraud = model_dir(root, "fraud", "fraud", "5", builders.sklearn_regressor)  # added while serving
        client.load_model("fraud")
        got = infer(client, "fraud", fraud.x[:4]).as_numpy("predict")
        np.testing.assert_allclose(got, fraud.estimator.predict(fraud.x[:4]))
        huge = root / "huge"
        huge.mkdir()
        with (huge / "model.joblib").open("wb") as sparse:
            sparse.truncate(GIB + GIB // 2)  # 1.5 GiB on paper, no disk: refused before it is read
        (huge / "model-settings.json").write_text(json.dumps({"name": "huge", "uri": "model.joblib"}))
        refused = server.client.post("/v2/repository/models/huge/load")
        assert refused.status_code == 409
        assert "model huge version 1 needs 1536.0 MiB (its file)" in refused.json()["error"]
        assert "of max_memory_bytes 1024.0 MiB" in refused.json()["error"]
        missing = server.client.post("/v2/repository/models/nope/load")
        assert missing.status_code == 404
        assert "the model repository has no model nope" in missing.json()["error"]
        assert client.is_server_ready()
    finally:
        client.close()


def test_the_repository_extension_over_grpc_loads_unloads_and_lists(
    repo: dict[str, Any], start_server: StartServer
) -> None:
    root, iris = repo["root"], repo["iris"]
    server = start_server("--model-repository", str(root), "--max-memory-bytes", str(GIB))
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    flowers = iris.x[[0, 60, 120]]
    tensor = triton_grpc.InferInput("input-0", list(flowers.shape), "FP64")
    tensor.set_data_from_numpy(flowers)
    try:
        listed = client.get_model_repository_index(as_json=True)["models"]
        assert [(m["name"], m["version"], m["state"]) for m in listed] == [
            ("churn", "1", "READY"), ("churn", "2", "READY"), ("iris", "1", "READY")
        ]  # fmt: skip
        client.unload_model("iris")
        with pytest.raises(InferenceServerException, match="model iris is not served here"):
            client.infer("iris", [tensor])
        listed = client.get_model_repository_index(as_json=True)["models"]
        assert {"name": "iris", "version": "1", "state": "UNAVAILABLE", "reason": "not loaded"} in listed
        client.load_model("iris")
        labels = [v.decode() for v in client.infer("iris", [tensor]).as_numpy("predict")]
        assert labels == iris.estimator.predict(flowers).tolist()
        huge = root / "huge"
        huge.mkdir()
        with (huge / "model.joblib").open("wb") as sparse:
            sparse.truncate(GIB + GIB // 2)  # refused by the memory bound, as over REST
        (huge / "model-settings.json").write_text(json.dumps({"name": "huge", "uri": "model.joblib"}))
        with pytest.raises(InferenceServerException, match=r"model huge version 1 needs 1536\.0 MiB") as refused:
            client.load_model("huge")
        assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
        with pytest.raises(InferenceServerException, match="the model repository has no model nope") as missing:
            client.load_model("nope")
        assert missing.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException, match="model nope") as unknown:
            client.unload_model("nope")
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
    finally:
        client.close()


def test_a_repository_with_a_bad_model_does_not_start(tmp_path: Path, start_server: StartServer) -> None:
    repo = tmp_path / "models"
    model_dir(repo, "ok", "ok", "1", builders.sklearn_logistic)
    (repo / "broken").mkdir()
    (repo / "broken" / "model-settings.json").write_text(json.dumps({"name": "broken", "uri": "absent.joblib"}))
    server = start_server("--model-repository", str(repo), ready=False)
    assert server.wait_exit() == 3
    assert not server.ready_seen
    assert "model broken version 1" in server.log()


def test_a_single_model_server_says_how_to_serve_a_repository(tmp_path: Path, start_server: StartServer) -> None:
    built = builders.sklearn_logistic(tmp_path)
    server = start_server("--model-uri", str(built.path), "--model-name", "solo")
    index = server.client.post("/v2/repository/index").json()
    assert index == [{"name": "solo", "version": "1", "state": "READY", "reason": ""}]
    refused = server.client.post("/v2/repository/models/solo/unload")
    assert refused.status_code == 400
    assert "start it with model_repository or models" in refused.json()["error"]


def test_a_remote_model_is_fetched_at_load_and_its_download_removed_at_unload(
    tmp_path: Path, start_server: StartServer
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    built = builders.sklearn_logistic(served)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as files:
        threading.Thread(target=files.serve_forever, daemon=True).start()
        root = tmp_path / "models"
        (root / "remote").mkdir(parents=True)
        uri = f"http://127.0.0.1:{files.server_address[1]}/{built.path.name}"
        (root / "remote" / "model-settings.json").write_text(json.dumps({"name": "remote", "uri": uri}))
        downloads = tmp_path / "downloads"
        server = start_server("--model-repository", str(root), env={"MODELSERVER_DOWNLOAD_DIR": str(downloads)})
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            got = infer(client, "remote", built.x[:4]).as_numpy("predict_proba")
            np.testing.assert_allclose(got, built.estimator.predict_proba(built.x[:4]))
            assert len(list(downloads.iterdir())) == 1  # fetched once, into a directory of its own
            client.load_model("remote")  # loaded again: a new download replaces the old one
            assert len(list(downloads.iterdir())) == 1
            client.unload_model("remote")
            assert list(downloads.iterdir()) == []
        finally:
            client.close()
            files.shutdown()
