"""The tests' operator process: which model server image it tells the operator to default to."""

from pathlib import Path

import pytest
from testkit.operator import PLACEHOLDER_IMAGE, TEST_IMAGE_ENV, OperatorProcess


def image_of(process: OperatorProcess) -> str:
    return process._env["MODELROLLOUT_DEFAULT_IMAGE"]


def test_the_placeholder_unless_the_environment_names_an_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(TEST_IMAGE_ENV, raising=False)
    assert image_of(OperatorProcess(kubeconfig=tmp_path, namespace="n", log_dir=tmp_path)) == PLACEHOLDER_IMAGE
    # What `make e2e-kind` sets: the image it built and loaded into kind.
    monkeypatch.setenv(TEST_IMAGE_ENV, "modelrollout/model-server:dev")
    assert image_of(OperatorProcess(kubeconfig=tmp_path, namespace="n", log_dir=tmp_path)) == (
        "modelrollout/model-server:dev"
    )
    # A test's own settings still win.
    extra = {"MODELROLLOUT_DEFAULT_IMAGE": "registry.example/other:1"}
    process = OperatorProcess(kubeconfig=tmp_path, namespace="n", log_dir=tmp_path, extra_env=extra)
    assert image_of(process) == "registry.example/other:1"
