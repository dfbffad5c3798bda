"""The models a server serves (modelserver.repository): a directory or list of model-settings, versions and the
default version, loading and unloading by name, the memory bound, and what a bad repository is told. Models are
real scikit-learn files in a temporary directory; the resident-memory probe is a stand-in, so sizes are exact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from modelserver.dataplane import Call
from modelserver.errors import ModelLoadError, ModelNotFound, ModelUnloaded, ServingError
from modelserver.repository import (
    MIB,
    DirectorySource,
    ListSource,
    NotARepository,
    Repository,
    RepositoryRefusal,
    version_order,
)
from modelserver.settings import ModelEntry, ServerSettings
from tests.unit.modelserver import builders


class Memory:
    """A resident-memory probe that grows by `per_load` bytes at each model built."""

    def __init__(self, per_load: int = 0) -> None:
        self.value = 100 * MIB
        self.per_load = per_load

    def __call__(self) -> int:
        return self.value

    def grow(self) -> None:
        self.value += self.per_load


def write_model(root: Path, directory: str, name: str, version: str = "1", **extra: Any) -> Path:
    folder = root / directory
    folder.mkdir(parents=True, exist_ok=True)
    builders.sklearn_logistic(folder)
    (folder / "model-settings.json").write_text(
        json.dumps({"name": name, "version": version, "uri": "model.joblib", "format": "sklearn"} | extra)
    )
    return folder


def settings(root: Path, **fields: Any) -> ServerSettings:
    return ServerSettings(model_repository=root, warmup=False, grpc=False, **fields)


def repository(root: Path, memory: Memory | None = None, **fields: Any) -> Repository:
    from modelserver.repository import build_dataplane  # noqa: PLC0415

    probe = memory or Memory()

    def build(s: ServerSettings) -> Any:
        plane = build_dataplane(s)
        probe.grow()
        return plane

    config = settings(root, **fields)
    return Repository(config, DirectorySource(root), build=build, resident_bytes=probe)


async def test_every_model_of_the_directory_is_served_by_name_and_version(tmp_path: Path) -> None:
    write_model(tmp_path, "churn/1", "churn", "1")
    write_model(tmp_path, "churn/10", "churn", "10")
    write_model(tmp_path, "fraud", "fraud", "2")
    repo = repository(tmp_path)
    await repo.start_all()
    assert repo.ready
    assert repo.get("churn").version == "10"  # the highest, numbers as numbers
    assert repo.get("churn", "1").version == "1"
    assert repo.get("fraud").name == "fraud"
    assert repo.only() is None
    with pytest.raises(ModelNotFound, match="model churn version 2 is not served here") as missing:
        repo.get("churn", "2")
    assert "churn version 1, churn version 10, fraud version 2" in missing.value.message
    index = await repo.index()
    assert [(r["name"], r["version"], r["state"]) for r in index] == [
        ("churn", "1", "READY"), ("churn", "10", "READY"), ("fraud", "2", "READY")
    ]  # fmt: skip
    await repo.stop()


async def test_models_load_and_unload_by_name_without_a_restart(tmp_path: Path) -> None:
    write_model(tmp_path, "churn", "churn")
    repo = repository(tmp_path)
    await repo.start_all()
    assert repo.only() is repo.get("churn")
    write_model(tmp_path, "fraud", "fraud", "3")  # added while serving
    assert ("fraud", "3", "UNAVAILABLE", "not loaded") in [tuple(r.values()) for r in await repo.index()]
    [plane] = await repo.load("fraud")
    assert repo.get("fraud") is plane
    before = repo.get("churn")
    await repo.load("churn")  # loaded again: a new copy replaces the running one
    assert repo.get("churn") is not before
    assert not before.ready
    await repo.unload("churn")
    with pytest.raises(ModelNotFound):
        repo.get("churn")
    with pytest.raises(ModelNotFound, match="not served here"):
        await repo.unload("churn")
    with pytest.raises(ModelNotFound, match=r"the model repository has no model nope \(it holds churn, fraud\)"):
        await repo.load("nope")
    await repo.stop()


async def test_an_unloaded_models_series_leave_the_metrics(tmp_path: Path) -> None:
    write_model(tmp_path, "gone", "gone", "4")
    write_model(tmp_path, "kept", "kept", "1")
    repo = repository(tmp_path)
    await repo.start_all()
    labels = {"model": "gone", "version": "4", "protocol": "v2", "code": "200"}
    assert REGISTRY.get_sample_value("modelserver_requests_total", labels) == 0
    await repo.unload("gone")
    assert REGISTRY.get_sample_value("modelserver_requests_total", labels) is None
    assert REGISTRY.get_sample_value("modelserver_requests_total", labels | {"model": "kept", "version": "1"}) == 0
    await repo.stop()


async def test_a_model_beyond_the_memory_bound_is_refused_with_the_sizes(tmp_path: Path) -> None:
    write_model(tmp_path, "a", "a")
    memory = Memory(per_load=30 * MIB)
    repo = repository(tmp_path, memory, max_memory_bytes=50 * MIB)
    await repo.start_all()  # a: 30 MiB measured
    write_model(tmp_path, "b", "b")
    with pytest.raises(RepositoryRefusal) as refused:
        await repo.load("b")
    message = refused.value.message
    assert refused.value.status == 409
    assert "model b version 1 needs 30.0 MiB (measured while loading)" in message
    assert "the models loaded take 30.0 MiB of max_memory_bytes 50.0 MiB (a 1 (30.0 MiB))" in message
    assert "unload a model first, or raise max_memory_bytes" in message
    with pytest.raises(ModelNotFound):
        repo.get("b")  # not served: the copy was dropped
    await repo.load("a")  # reloading a: its own 30 MiB are given back first
    await repo.unload("a")
    await repo.load("b")  # room now
    assert repo.get("b").ready
    await repo.stop()


async def test_a_file_larger_than_the_bound_is_refused_before_loading(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "big", "big")
    memory = Memory()
    size = (folder / "model.joblib").stat().st_size
    repo = repository(tmp_path, memory, max_memory_bytes=size - 1)
    with pytest.raises(ModelLoadError, match=r"model big version 1: .* needs .* MiB \(its file\)"):
        await repo.start_all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "model-settings.json is not JSON"),
        (json.dumps({"version": "1", "uri": "m.joblib"}), "model-settings.json: name: Field required"),
        (json.dumps({"name": "a", "uri": "m.joblib", "gpu": True}), "gpu: Extra inputs are not permitted"),
        (json.dumps({"name": "a", "format": "sklearn"}), "model a: model_uri is required"),
        (json.dumps({"name": "a", "format": "custom"}), "model a: model_format 'custom' needs model_class"),
        (json.dumps({"name": "a b", "uri": "m.joblib"}), "name: String should match pattern"),
    ],
)
async def test_a_bad_model_settings_file_fails_the_start_naming_its_directory(
    tmp_path: Path, content: str, message: str
) -> None:
    write_model(tmp_path, "good", "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model-settings.json").write_text(content)
    with pytest.raises(ModelLoadError, match="model repository: bad: ") as failed:
        await repository(tmp_path).start_all()
    assert message in str(failed.value)


async def test_a_model_that_does_not_load_fails_the_start_and_a_later_load(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "a", "a")
    (folder / "model.joblib").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="model a version 1: "):
        await repository(tmp_path).start_all()
    write_model(tmp_path, "ok", "ok")
    shutil.rmtree(folder)
    repo = repository(tmp_path)
    await repo.start_all()
    folder = write_model(tmp_path, "a", "a")
    (folder / "model.joblib").write_bytes(b"not a model")
    with pytest.raises(RepositoryRefusal, match="model a version 1 cannot be loaded: ") as refused:
        await repo.load("a")
    assert refused.value.status == 409
    assert repo.ready  # the others keep serving
    await repo.stop()


async def test_the_same_model_version_twice_is_a_problem_and_an_empty_repository_fails(tmp_path: Path) -> None:
    write_model(tmp_path, "one", "m", "1")
    write_model(tmp_path, "two", "m", "1")
    listing = DirectorySource(tmp_path).read()
    assert [e.name for e in listing.entries] == ["m"]
    assert listing.problems == {"two": "model m version 1 is also in one"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="holds no model"):
        await repository(empty).start_all()
    missing = DirectorySource(tmp_path / "nowhere").read()
    assert missing.problems == {str(tmp_path / "nowhere"): "the model repository is not a directory"}


async def test_a_list_of_models_in_the_settings(tmp_path: Path) -> None:
    built = builders.sklearn_logistic(tmp_path)
    entries = [ModelEntry(name="x", uri=str(built.path)), ModelEntry(name="y", version="2", uri=str(built.path))]
    config = ServerSettings(models=entries, warmup=False, grpc=False)
    repo = Repository(config, ListSource(entries))
    await repo.start_all()
    assert {(p.name, p.version) for p in repo.planes()} == {("x", "1"), ("y", "2")}
    await repo.unload("y")
    await repo.load("y")
    assert repo.get("y").version == "2"
    await repo.stop()


async def test_a_single_model_server_refuses_load_and_unload(tmp_path: Path) -> None:
    built = builders.sklearn_logistic(tmp_path)
    config = ServerSettings(model_uri=str(built.path), model_name="solo", warmup=False, grpc=False)
    repo = Repository(config, None)
    await repo.start_single(warmup=False)
    assert repo.only() is repo.get("solo")
    for action in (repo.load, repo.unload):
        with pytest.raises(NotARepository, match="this server serves one model") as refused:
            await action("solo")
        assert refused.value.status == 400
    assert [r["state"] for r in await repo.index()] == ["READY"]
    await repo.stop()


def test_versions_order_numbers_as_numbers() -> None:
    assert sorted(["10", "9", "1.10", "1.9", "2", "v2", "1"], key=version_order) == [
        "1", "1.9", "1.10", "2", "9", "10", "v2"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_repository": "r", "models": []}, "not both"),
        ({"model_repository": "r", "model_uri": "m.joblib"}, "leave them out"),
        ({"model_repository": "r", "workers": 2}, "need workers=1"),
        ({"model_uri": "m.joblib", "max_memory_bytes": 10}, "bounds a repository's models"),
        ({"models": [{"name": "a", "uri": "x"}, {"name": "a", "uri": "y"}]}, "one name and version twice"),
    ],
)
def test_repository_settings_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerSettings(**fields)


def test_a_repository_needs_no_model_uri() -> None:
    assert ServerSettings(model_repository=Path("r")).serves_a_repository()


def test_serving_errors_of_the_repository_are_4xx() -> None:
    assert issubclass(RepositoryRefusal, ServingError)
    assert (RepositoryRefusal.status, NotARepository.status) == (409, 400)


async def test_a_request_reaching_an_unloaded_batched_model_is_told_to_ask_again(tmp_path: Path) -> None:
    write_model(tmp_path, "churn", "churn")
    repo = repository(tmp_path, batching=True)
    await repo.start_all()
    plane = repo.get("churn")  # a request holds the copy...
    await repo.unload("churn")  # ...which is unloaded before its rows reach the batcher
    with pytest.raises(ModelUnloaded, match="was unloaded or replaced; send the request again") as told:
        await plane.predict(np.zeros((1, plane.signature.n_features)), Call(plane, "v2"))
    assert told.value.status == 503
