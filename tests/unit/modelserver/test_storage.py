"""Local URIs and the sha256 check (http and s3 run against real servers in the integration tests)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from modelserver.errors import ModelLoadError
from modelserver.storage import FetchOptions, fetch, is_remote


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "my model.joblib"
    path.write_bytes(b"model bytes")
    return path


def test_plain_path_and_file_uris(model_file: Path) -> None:
    assert fetch(str(model_file), FetchOptions()) == model_file
    assert fetch(model_file.as_uri(), FetchOptions()) == model_file
    assert fetch(f"file://localhost{model_file.as_uri()[7:]}", FetchOptions()) == model_file


def test_sha256_is_checked(model_file: Path) -> None:
    good = hashlib.sha256(b"model bytes").hexdigest()
    assert fetch(str(model_file), FetchOptions(sha256=good.upper())) == model_file
    with pytest.raises(ModelLoadError, match=f"sha256 mismatch for my model.joblib: expected {'0' * 64}"):
        fetch(str(model_file), FetchOptions(sha256="0" * 64))


def test_sha256_needs_a_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="needs a single file"):
        fetch(str(tmp_path), FetchOptions(sha256="0" * 64))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/no/such/model.joblib", "does not exist"),
        ("file://otherhost/model.joblib", "only local files"),
        ("ftp://host/model.joblib", "unsupported model URI scheme 'ftp'"),
        ("s3:///key.joblib", "no bucket"),
    ],
)
def test_unfetchable_uris_say_why(uri: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        fetch(uri, FetchOptions())


def test_remote_schemes() -> None:
    assert is_remote("s3://b/k")
    assert is_remote("https://h/m.onnx")
    assert is_remote("HTTP://h/m")
    assert not is_remote("/models/m.onnx")
    assert not is_remote("file:///m.onnx")
