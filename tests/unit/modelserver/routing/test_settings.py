from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelserver.routing.settings import RouterSettings, parse_upstreams


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVER_ROUTER_PORT", "9000")
    monkeypatch.setenv("MODELSERVER_ROUTER_CONFIGMAP", "prod/churn-router")
    monkeypatch.setenv("MODELSERVER_ROUTER_UPSTREAM", '{"1": "http://127.0.0.1:9001"}')
    settings = RouterSettings()
    assert settings.port == 9000
    assert settings.host == "127.0.0.1"
    assert settings.configmap == "prod/churn-router"
    assert settings.upstream == {"1": "http://127.0.0.1:9001"}
    # Flags (init arguments) win over the environment.
    assert RouterSettings(port=9100).port == 9100


def test_upstream_flags() -> None:
    assert parse_upstreams(["1=http://127.0.0.1:9001", "2=http://h:9/x=y"]) == {
        "1": "http://127.0.0.1:9001",
        "2": "http://h:9/x=y",
    }
    for bad in ["1", "=http://x", "1="]:
        with pytest.raises(ValueError, match="VERSION=URL"):
            parse_upstreams([bad])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"port": 1}, "exactly one of configmap"),
        ({"port": 1, "configmap": "ns/n", "config_file": Path("r.json")}, "exactly one of configmap"),
        ({"port": 1, "configmap": "no-slash"}, "configmap"),
        ({"port": 1, "configmap": "Ns/n"}, "configmap"),
        ({"port": 1, "config_file": Path("r.json"), "kubeconfig": Path("k")}, "kubeconfig only applies"),
        ({"port": 1, "config_file": Path("r.json"), "upstream": {"1": "127.0.0.1:9"}}, "is not VERSION=http"),
        ({"config_file": Path("r.json")}, "port"),
        ({"port": 1, "config_file": Path("r.json"), "max_shadow_inflight": 0}, "max_shadow_inflight"),
    ],
)
def test_invalid_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RouterSettings(**fields)  # type: ignore[arg-type]
