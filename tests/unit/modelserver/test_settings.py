from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelserver.settings import ServerSettings


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVER_MODEL_URI", "s3://models/churn/7/model.joblib")
    monkeypatch.setenv("MODELSERVER_MODEL_VERSION", "7")
    monkeypatch.setenv("MODELSERVER_BATCHING", "true")
    monkeypatch.setenv("MODELSERVER_FEATURE_NAMES", '["a", "b"]')
    settings = ServerSettings()
    assert settings.model_version == "7"
    assert settings.batching
    assert settings.feature_names == ["a", "b"]
    # Flags (init arguments) win over the environment.
    assert ServerSettings(model_version="8").model_version == "8"


def test_batching_is_off_by_default() -> None:
    assert ServerSettings(model_uri="/m.joblib").batching is False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "model_uri is required"),
        ({"model_format": "custom"}, "needs model_class"),
        ({"model_uri": "/m", "model_sha256": "abc"}, "model_sha256"),
        ({"model_uri": "/m", "model_name": "bad name"}, "model_name"),
        ({"model_uri": "/m", "workers": 0}, "workers"),
    ],
)
def test_invalid_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServerSettings(**fields)  # type: ignore[arg-type]


def test_custom_class_needs_no_uri() -> None:
    assert ServerSettings(model_format="custom", model_class="pkg.mod:Model").model_uri == ""
