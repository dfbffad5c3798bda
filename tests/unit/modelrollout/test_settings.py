"""Operator settings: grouped like Kopf's, read from the same flat MODELROLLOUT_* variables as before."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelrollout.settings import OperatorSettings

ENVIRONMENT = {
    "MODELROLLOUT_NAMESPACES": '["a", "b"]',
    "MODELROLLOUT_RECONCILE_INTERVAL_S": "5",
    "MODELROLLOUT_DEFAULT_IMAGE": "registry.example/server:2",
    "MODELROLLOUT_PROGRESS_DEADLINE_S": "60",
    "MODELROLLOUT_HISTORY_LIMIT": "3",
    "MODELROLLOUT_PROMETHEUS_URL": "http://prometheus:9090",
    "MODELROLLOUT_PROMETHEUS_SCRAPE_INTERVAL_S": "30",
    "MODELROLLOUT_FIELD_MANAGER": "ours",
    "MODELROLLOUT_APPLY_RETRY_INITIAL_S": "1",
    "MODELROLLOUT_APPLY_RETRY_MAX_S": "60",
    "MODELROLLOUT_LIVENESS_PORT": "0",
    "MODELROLLOUT_METRICS_PORT": "9100",
}


def test_every_variable_lands_in_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    assert settings.watching.model_dump() == {"namespaces": ["a", "b"], "reconcile_interval_s": 5}
    assert settings.planning.model_dump() == {
        "default_image": "registry.example/server:2",
        "progress_deadline_s": 60,
        "history_limit": 3,
    }
    assert settings.analysis.model_dump() == {
        "prometheus_url": "http://prometheus:9090",
        "prometheus_scrape_interval_s": 30,
    }
    assert settings.applying.model_dump() == {
        "field_manager": "ours",
        "apply_retry_initial_s": 1,
        "apply_retry_max_s": 60,
    }
    assert settings.endpoints.model_dump() == {"liveness_port": 0, "metrics_port": 9100}
    # Every field of every group has a variable above: a new setting needs a line here.
    fields = {f for group in settings.model_dump().values() for f in group}
    assert {f"MODELROLLOUT_{f.upper()}" for f in fields} == set(ENVIRONMENT)


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROLLOUT_PROMETHEUS_URL", "prometheus:9090")
    with pytest.raises(ValidationError, match="prometheus_url"):
        OperatorSettings()
