"""The chart's generated files are what the code generates, and its values model says what the chart renders."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from modelrollout.chart import generate
from modelrollout.chart.values import CHART_OWNED_SETTINGS, ChartValues, settings_env
from modelrollout.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[4]
CHART = ROOT / "charts" / "modelrollout"


def _schema() -> dict[str, Any]:
    return generate.values_schema()


def _valid(values: dict[str, Any]) -> None:
    jsonschema.validate(values, _schema(), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("relative", sorted(generate.files()))
def test_checked_in_file_is_what_the_code_generates(relative: str) -> None:
    assert (CHART / relative).read_text() == generate.files()[relative], f"{relative} is stale: run `make chart`"


def test_values_yaml_holds_the_models_defaults_and_passes_the_schema() -> None:
    values = yaml.safe_load(generate.values_yaml())
    assert values == ChartValues().model_dump(by_alias=True, mode="json")
    _valid(values)


def test_every_operator_setting_the_chart_does_not_own_is_a_value_with_its_variable() -> None:
    env = settings_env()
    settings = OperatorSettings()
    for group in type(settings).model_fields:
        for field in type(getattr(settings, group)).model_fields:
            camel_group = to_camel(group)
            if (group, field) in CHART_OWNED_SETTINGS:
                assert to_camel(field) not in env[camel_group]
            else:
                assert env[camel_group][to_camel(field)] == f"MODELROLLOUT_{field.upper()}", (group, field)
    assert "MODELROLLOUT_RECONCILE_INTERVAL_S" in env["watching"].values()


def test_the_environment_the_chart_renders_is_read_back_as_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = ChartValues.model_validate(
        {"config": {"planning": {"historyLimit": 3}, "analysis": {"prometheusUrl": "http://prom:9090"}}}
    )
    config = values.model_dump(by_alias=True, mode="json")["config"]
    for group, fields in settings_env().items():
        for key, variable in fields.items():
            value = config[group][key]
            if value is not None:
                monkeypatch.setenv(variable, value if isinstance(value, str) else json.dumps(value))
    settings = OperatorSettings()
    assert settings.planning.history_limit == 3
    assert settings.analysis.prometheus_url == "http://prom:9090"
    assert settings.applying == OperatorSettings().applying.model_copy()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicaCount": 0}, "replicaCount"),
        ({"replicaCounts": 2}, "replicaCounts"),
        ({"config": {"planning": {"historyLimit": 1000}}}, "historyLimit"),
        ({"config": {"analysis": {"prometheusUrl": "prometheus:9090"}}}, "prometheusUrl"),
        ({"config": {"watching": {"namespaces": ["a"]}}}, "namespaces"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"rbac": {"secretNames": ["UPPER"]}}, "secretNames"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval"),
    ],
)
def test_a_wrong_value_is_refused_by_the_model_and_the_schema_naming_the_field(
    values: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        ChartValues.model_validate(values)
    with pytest.raises(jsonschema.ValidationError):
        _valid(values)


def test_the_chart_version_the_images_and_the_operator_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    assert OperatorSettings().planning.default_image.endswith(f":{version}")
    assert ChartValues().image.tag == "", "the operator image's tag defaults to the appVersion"


def test_files_listed_in_the_chart_exist_for_every_rbac_scope_the_templates_use() -> None:
    rbac_template = (CHART / "templates" / "rbac.yaml").read_text()
    for scope in ("cluster", "namespaced", "secrets", "leader"):
        assert f'"scope" "{scope}"' in rbac_template
        assert f"files/rbac/{scope}.yaml" in generate.files()
