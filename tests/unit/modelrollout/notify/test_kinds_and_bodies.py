"""Which webhooks hear of a notification, and the three bodies they get."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from modelrollout.api.notifications import NotificationsSpec
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef, Weights
from modelrollout.notify.bodies import ADAPTIVE_CARD, SCHEMA, ModelDeploymentRef, Notification, render
from modelrollout.notify.kinds import ordered, routes
from modelrollout.settings import DefaultWebhook

T0 = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
DEFAULTS = [
    DefaultWebhook(name="ops", url="https://hooks.example/ops", events=["rolledBack"]),
    DefaultWebhook(name="all", url="https://hooks.example/all", format="teams"),
]


def spec(**notifications: object) -> NotificationsSpec:
    return NotificationsSpec.model_validate(notifications)


def test_each_webhook_gets_the_kinds_it_asked_for_and_defaults_only_unless_refused() -> None:
    mine = spec(webhooks=[{"name": "chat", "url": "https://c/", "format": "slack", "events": ["promoted"]},
                          {"name": "ci", "url": "https://ci/"}])  # fmt: skip
    promoted = routes("ml", "churn", mine, DEFAULTS, frozenset({"promoted"}))
    assert [(r.source, r.name, r.format) for r in promoted] == [
        ("spec", "chat", "slack"),
        ("spec", "ci", "generic"),
        ("operator", "all", "teams"),
    ]
    assert promoted[0].at == "spec.notifications.webhooks[0]"
    assert promoted[0].lane == ("spec", "ml", "churn", "chat")
    assert promoted[2].lane == ("operator", "", "", "all"), "one lane per default webhook, across the fleet"
    rolled = routes("ml", "churn", mine, DEFAULTS, frozenset({"rolledBack", "analysisFailed"}))
    assert [r.name for r in rolled] == ["ci", "ops", "all"]
    alone = spec(operatorDefaults=False, webhooks=[{"name": "ci", "url": "https://ci/"}])
    assert [r.name for r in routes("ml", "churn", alone, DEFAULTS, frozenset({"rolledBack"}))] == ["ci"]
    assert [r.name for r in routes("ml", "churn", None, DEFAULTS, frozenset({"rolledBack"}))] == ["ops", "all"]
    assert routes("ml", "churn", mine, DEFAULTS, frozenset()) == []


def test_kinds_are_said_in_the_documented_order() -> None:
    assert ordered(frozenset({"analysisFailed", "rolledBack"})) == ["rolledBack", "analysisFailed"]


def notification() -> Notification:
    status = ModelDeploymentStatus(
        phase="Progressing",
        stable=RevisionRef(revision="aaaa1111", version="1"),
        canary=RevisionRef(revision="bbbb2222", version="2"),
        current_step=2,
        weights=Weights(stable=80, canary=20),
    )
    return Notification.of(
        id_="churn.00000000000004d2.0002deadbeef",
        kinds=["stepReached"],
        event=("Normal", "WeightSet", "revision bbbb2222 (version 2) gets 20% of requests"),
        subject=ModelDeploymentRef(namespace="ml", name="churn", uid="u-1"),
        status=status,
        time=T0,
    )


def test_the_generic_body_is_the_notification_as_json() -> None:
    body = render("generic", notification())
    assert body == {
        "schema": SCHEMA,
        "id": "churn.00000000000004d2.0002deadbeef",
        "kinds": ["stepReached"],
        "reason": "WeightSet",
        "type": "Normal",
        "message": "revision bbbb2222 (version 2) gets 20% of requests",
        "time": "2026-12-04T09:30:00Z",
        "modelDeployment": {"namespace": "ml", "name": "churn", "uid": "u-1"},
        "phase": "Progressing",
        "stable": {"revision": "aaaa1111", "version": "1"},
        "canary": {"revision": "bbbb2222", "version": "2"},
        "step": 2,
        "weights": {"stable": 80, "canary": 20, "mirror": 0},
    }
    assert Notification.model_validate(json.loads(json.dumps(body))) == notification()


def test_the_slack_body_has_a_fallback_text_and_blocks() -> None:
    body = render("slack", notification())
    assert body["text"] == "ml/churn: WeightSet: revision bbbb2222 (version 2) gets 20% of requests"
    header, section, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "ml/churn: WeightSet"}}
    assert section["text"] == {"type": "mrkdwn", "text": "revision bbbb2222 (version 2) gets 20% of requests"}
    assert {"type": "mrkdwn", "text": "*Traffic*\nstable 80%, candidate 20%"} in section["fields"]
    assert len(section["fields"]) <= 10  # Slack's limit
    assert "churn.00000000000004d2.0002deadbeef" in context["elements"][0]["text"]


def test_the_teams_body_is_one_adaptive_card_for_a_workflows_webhook() -> None:
    body = render("teams", notification())
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == ADAPTIVE_CARD
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, message, facts, footer = card["body"]
    assert title["text"] == "ml/churn: WeightSet"
    assert message["text"].endswith("20% of requests")
    assert {"title": "Candidate", "value": "version 2 (bbbb2222)"} in facts["facts"]
    assert "churn.00000000000004d2.0002deadbeef" in footer["text"]


def test_a_warning_stands_out_in_teams() -> None:
    warning = notification().model_copy(update={"type": "Warning", "reason": "AnalysisFailed"})
    assert render("teams", warning)["attachments"][0]["content"]["body"][0]["color"] == "Attention"
