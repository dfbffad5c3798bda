"""Transport-level refusals over real HTTP: body limits, encodings, unknown models, bad settings."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.modelserver.conftest import Server, StartServer
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path, start_server: StartServer) -> Server:
    built = builders.sklearn_logistic(tmp_path)
    return start_server("--model-uri", str(built.path), "--model-name", "m", env={"MODELSERVER_MAX_BODY_BYTES": "4096"})


def chunks(total: int) -> Iterator[bytes]:
    # A generator body goes out with chunked transfer encoding: no Content-Length to refuse up front.
    for _ in range(total // 1024):
        yield b" " * 1024


@pytest.mark.parametrize("path", ["/v2/models/m/infer", "/predict"])
def test_oversized_bodies_get_413(server: Server, path: str) -> None:
    declared = server.client.post(path, content=b" " * 5000)
    assert declared.status_code == 413
    assert "exceeds the limit of 4096 bytes" in declared.json()["error"]
    streamed = server.client.post(path, content=chunks(8192))
    assert streamed.status_code == 413


def test_compressed_bodies_get_415(server: Server) -> None:
    response = server.client.post("/predict", content=b"x", headers={"Content-Encoding": "gzip"})
    assert response.status_code == 415
    assert "gzip" in response.json()["error"]


def test_unknown_models_and_versions_get_404(server: Server) -> None:
    for path in ("/v2/models/other", "/v2/models/m/versions/9", "/v2/models/other/ready"):
        response = server.client.get(path)
        assert response.status_code == 404
        assert "is not served here" in response.json()["error"]
    assert server.client.post("/v2/models/other/infer", json={"inputs": []}).status_code == 404
    assert server.client.get("/v2/models/m/infer").status_code == 405


def test_invalid_settings_exit_2_naming_the_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelserver", "serve", "--model-uri", "/m.joblib", "--sha256", "xyz"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "model_sha256" in result.stderr
