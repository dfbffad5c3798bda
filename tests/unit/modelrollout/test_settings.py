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
    "MODELROLLOUT_MAX_CONCURRENT_PASSES": "4",
    "MODELROLLOUT_API_QPS": "20",
    "MODELROLLOUT_API_BURST": "30",
    "MODELROLLOUT_API_MAX_RETRIES": "2",
    "MODELROLLOUT_LIVENESS_PORT": "0",
    "MODELROLLOUT_METRICS_PORT": "9100",
    "MODELROLLOUT_LEADER_ELECTION": "false",
    "MODELROLLOUT_LEASE_NAME": "mr",
    "MODELROLLOUT_LEASE_NAMESPACE": "ops",
    "MODELROLLOUT_LEADER_IDENTITY": "replica-0",
    "MODELROLLOUT_LEASE_DURATION_S": "30",
    "MODELROLLOUT_RENEW_DEADLINE_S": "20",
    "MODELROLLOUT_RETRY_PERIOD_S": "4",
    "MODELROLLOUT_LOG_FORMAT": "json",
    "MODELROLLOUT_DEFAULT_WEBHOOKS": "- {name: chat, url: 'https://hooks.example/T1', format: slack}",
    "MODELROLLOUT_NOTIFY_MAX_ATTEMPTS": "3",
    "MODELROLLOUT_NOTIFY_MAX_AGE_S": "60",
    "MODELROLLOUT_NOTIFY_RETRY_INITIAL_S": "0.5",
    "MODELROLLOUT_NOTIFY_RETRY_MAX_S": "10",
    "MODELROLLOUT_NOTIFY_QUEUE_LIMIT": "50",
    "MODELROLLOUT_NOTIFY_DEDUPE_LIMIT": "500",
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
        "max_concurrent_passes": 4,
        "api_qps": 20,
        "api_burst": 30,
        "api_max_retries": 2,
    }
    assert settings.endpoints.model_dump() == {"liveness_port": 0, "metrics_port": 9100}
    assert settings.leader.model_dump() == {
        "leader_election": False,
        "lease_name": "mr",
        "lease_namespace": "ops",
        "leader_identity": "replica-0",
        "lease_duration_s": 30,
        "renew_deadline_s": 20,
        "retry_period_s": 4,
    }
    assert settings.logging.model_dump() == {"log_format": "json"}
    notifications = settings.notifications.model_dump(exclude={"default_webhooks"})
    assert notifications == {
        "notify_max_attempts": 3,
        "notify_max_age_s": 60,
        "notify_retry_initial_s": 0.5,
        "notify_retry_max_s": 10,
        "notify_queue_limit": 50,
        "notify_dedupe_limit": 500,
    }
    [hook] = settings.notifications.default_webhooks
    assert (hook.name, hook.url, hook.format, hook.timeout) == ("chat", "https://hooks.example/T1", "slack", "5s")
    # Every field of every group has a variable above: a new setting needs a line here.
    fields = {f for group in settings.model_dump().values() for f in group}
    assert {f"MODELROLLOUT_{f.upper()}" for f in fields} == set(ENVIRONMENT)


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROLLOUT_PROMETHEUS_URL", "prometheus:9090")
    with pytest.raises(ValidationError, match="prometheus_url"):
        OperatorSettings()


def test_leader_election_defaults_are_client_gos() -> None:
    leader = OperatorSettings().leader
    assert leader.leader_election
    assert (leader.lease_name, leader.lease_namespace, leader.leader_identity) == ("modelrollout-operator", None, None)
    assert (leader.lease_duration_s, leader.renew_deadline_s, leader.retry_period_s) == (15, 10, 2)


@pytest.mark.parametrize(
    ("durations", "problem"),
    [
        ({"LEASE_DURATION_S": "10", "RENEW_DEADLINE_S": "10"}, "shorter than lease_duration_s"),
        ({"RENEW_DEADLINE_S": "2.4", "RETRY_PERIOD_S": "2"}, "longer than 1.2 x retry_period_s"),
        ({"LEASE_DURATION_S": "1.5"}, "lease_duration_s"),
    ],
)
def test_durations_that_could_give_two_leaders_are_refused(
    monkeypatch: pytest.MonkeyPatch, durations: dict[str, str], problem: str
) -> None:
    for name, value in durations.items():
        monkeypatch.setenv(f"MODELROLLOUT_{name}", value)
    with pytest.raises(ValidationError, match=problem):
        OperatorSettings()


def test_an_unknown_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROLLOUT_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        OperatorSettings()


@pytest.mark.parametrize(
    "written",
    [
        '[{"name": "ops", "url": "https://hooks.example/a", "events": ["rolledBack"], "bearerToken": "s3cret"}]',
        "- name: ops\n  url: https://hooks.example/a\n  events: [rolledBack]\n  bearerToken: s3cret\n",
    ],
    ids=["json", "yaml"],
)
def test_default_webhooks_are_read_as_json_or_yaml_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    monkeypatch.setenv("MODELROLLOUT_DEFAULT_WEBHOOKS", written)
    [hook] = OperatorSettings().notifications.default_webhooks
    assert (hook.events, hook.bearer_token) == (["rolledBack"], "s3cret")
    # A traceback or a log line with the settings in it must not carry the secrets.
    assert "s3cret" not in repr(hook)
    assert "hooks.example" not in repr(hook)


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("- {name: a, url: 'https://x/'}\n- {name: a, url: 'https://y/'}", "must be unique"),
        ("- {name: a, url: 'hooks.example/x'}", "url"),
        ("- {name: a, url: 'https://x/', events: [deployed]}", "events"),
        # YAML 1.1 reads a bare `on` as true: why the field is `events`.
        ("- {name: a, url: 'https://x/', on: [promoted]}", "default_webhooks.0"),
    ],
)
def test_a_bad_default_webhook_is_refused(monkeypatch: pytest.MonkeyPatch, written: str, problem: str) -> None:
    monkeypatch.setenv("MODELROLLOUT_DEFAULT_WEBHOOKS", written)
    with pytest.raises(ValidationError, match=problem):
        OperatorSettings()
