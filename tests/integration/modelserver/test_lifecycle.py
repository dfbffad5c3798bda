"""SIGTERM lets in-flight requests finish; settings come from the environment as well as from flags."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from testkit.waiting import wait_until

from tests.integration.modelserver.conftest import StartServer
from tests.unit.modelserver import builders

pytestmark = pytest.mark.integration


def test_sigterm_lets_the_request_in_flight_finish(
    tmp_path: Path, start_server: StartServer, custom_env: dict[str, str]
) -> None:
    marker = tmp_path / "predict-started"
    env = {**custom_env, "SLOW_MODEL_DELAY": "1.5", "SLOW_MODEL_MARKER": str(marker)}
    server = start_server(
        "--format", "custom", "--model-class", f"{builders.CUSTOM_MODULE}:SlowDoubler", "--model-name", "slow", env=env
    )
    outcome: dict[str, httpx.Response] = {}

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            outcome["response"] = client.post("/predict", json={"f0": 42, "f1": 1, "f2": 2})

    caller = threading.Thread(target=call)
    caller.start()
    # Once the marker exists, the model is inside predict() for our request.
    wait_until(marker.exists, within=30, interval=0.02, what=server.log)
    assert server.stop() == 0
    caller.join(30)
    assert outcome["response"].status_code == 200
    assert outcome["response"].json()["predictions"] == [90.0]
    assert "Waiting for application shutdown" in server.log()


def test_environment_settings_and_structured_logs(tmp_path: Path, start_server: StartServer) -> None:
    built = builders.sklearn_regressor(tmp_path)
    env = {
        "MODELSERVER_MODEL_URI": built.path.as_uri(),
        "MODELSERVER_MODEL_NAME": "diabetes",
        "MODELSERVER_MODEL_VERSION": "v2",
        "MODELSERVER_FEATURE_NAMES": '["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"]',
    }
    server = start_server(env=env)
    metadata = server.client.get("/v2/models/diabetes/versions/v2").json()
    assert metadata["parameters"]["feature_names"][:3] == ["age", "sex", "bmi"]
    assert metadata["parameters"]["task"] == "regression"
    assert '"msg":"serving model"' in server.log()
    assert server.client.get("/openapi.json").json()["openapi"] == "3.1.0"
