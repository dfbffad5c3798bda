from __future__ import annotations

from pathlib import Path

import pytest

from modelserver.dataplane import Batching, DataPlane, Limits
from modelserver.runtimes import LoadOptions, load_model
from tests.unit.modelserver import builders


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def logistic(model_dir: Path) -> builders.Built:
    return builders.sklearn_logistic(model_dir)


@pytest.fixture(scope="session")
def iris(model_dir: Path) -> builders.Built:
    return builders.sklearn_forest_iris(model_dir)


@pytest.fixture(scope="session")
def regressor(model_dir: Path) -> builders.Built:
    return builders.sklearn_regressor(model_dir)


def make_plane(
    path: Path, *, name: str = "m", version: str = "1", batching: Batching | None = None, max_rows: int = 100
) -> DataPlane:
    model = load_model(path, "sklearn", LoadOptions())
    return DataPlane(model, name=name, version=version, platform="sklearn", limits=Limits(max_rows), batching=batching)
