"""Models fetched over real HTTP and from a real S3-compatible server (moto) on loopback; failures stop the
process with a non-zero exit code and the server never turns ready."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from testkit.ports import free_port

from tests.integration.modelserver.conftest import StartServer, wait_for_port
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration

S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield root, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert moto, "moto[server] is a test dependency"
    process = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_http_with_sha256(tmp_path: Path, http_root: tuple[Path, str], start_server: StartServer) -> None:
    root, base = http_root
    built = builders.sklearn_logistic(root)
    digest = hashlib.sha256(built.path.read_bytes()).hexdigest()
    server = start_server("--model-uri", f"{base}/model.joblib", "--sha256", digest)
    response = server.client.post("/v2/models/model/infer", json={
        "inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": built.x[0].tolist()}]
    })  # fmt: skip
    assert response.json()["outputs"][0]["data"] == built.estimator.predict(built.x[:1]).tolist()


@pytest.mark.parametrize(
    ("path", "sha256", "message"),
    [("missing.joblib", None, "answered HTTP 404"), ("model.joblib", "0" * 64, "sha256 mismatch")],
)
def test_http_failures_exit_non_zero(
    http_root: tuple[Path, str], start_server: StartServer, path: str, sha256: str | None, message: str
) -> None:
    root, base = http_root
    builders.sklearn_logistic(root)
    extra = ["--sha256", sha256] if sha256 else []
    server = start_server("--model-uri", f"{base}/{path}", *extra, ready=False)
    assert server.wait_exit() == 2
    assert not server.ready_seen
    assert message in server.log()


def test_s3_object_and_prefix(tmp_path: Path, s3_endpoint: str, start_server: StartServer) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **_credentials())
    s3.create_bucket(Bucket="models")
    onnx = builders.onnx_logistic(tmp_path)
    s3.upload_file(str(onnx.path), "models", "churn/7/model.onnx")
    env = {**S3_ENV, "MODELSERVER_S3_ENDPOINT_URL": s3_endpoint}

    for uri in ("s3://models/churn/7/model.onnx", "s3://models/churn/7/"):
        server = start_server("--model-uri", uri, "--model-name", "churn", env=env)
        x = onnx.x[:2].astype("float32")
        response = server.client.post("/v2/models/churn/infer", json={
            "inputs": [{"name": "x", "shape": [2, 20], "datatype": "FP32", "data": x.tolist()}]
        })  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == onnx.estimator.predict(x).tolist()
        assert server.stop() == 0

    missing = start_server("--model-uri", "s3://models/churn/8/model.onnx", env=env, ready=False)
    assert missing.wait_exit() == 2
    assert "cannot fetch s3://models/churn/8/model.onnx" in missing.log()


def test_unloadable_model_exits_non_zero_and_is_never_ready(tmp_path: Path, start_server: StartServer) -> None:
    corrupt = tmp_path / "model.joblib"
    corrupt.write_bytes(b"this is not a model")
    server = start_server("--model-uri", str(corrupt), ready=False)
    assert server.wait_exit() == 3
    assert not server.ready_seen
    assert "cannot load sklearn model" in server.log()


def _credentials() -> dict[str, str]:
    return {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
