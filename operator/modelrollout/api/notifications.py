"""Where a ModelDeployment's rollout events are sent (`spec.notifications`): webhooks, each with a body format and
the kinds of events it wants, and whether the operator's own default webhooks get them too."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from modelrollout.api.base import DNS_LABEL, ApiModel, Matches, cel, cel_rules
from modelrollout.api.webhooks import WebhookTarget

# What a notification is about. One event may be several (a rollback decided by a failed analysis is both
# rolledBack and analysisFailed); the engine names them where it decides, never from an event's reason.
NotificationKind = Literal["started", "stepReached", "paused", "promoted", "rolledBack", "analysisFailed", "abDecided"]
NOTIFICATION_KINDS: tuple[NotificationKind, ...] = get_args(NotificationKind)
# generic: our JSON document; slack: an incoming webhook's text and blocks; teams: a Workflows webhook's Adaptive Card.
WebhookFormat = Literal["generic", "slack", "teams"]
WEBHOOKS_UNIQUE = "notifications.webhooks names must be unique: give each webhook its own name"
MAX_WEBHOOKS = 10
WebhookName = Annotated[
    str, Matches(DNS_LABEL, "must be a DNS label: lowercase letters, digits and '-', starting with a letter", 63)
]


class NotificationWebhook(WebhookTarget):
    """One receiver of this ModelDeployment's rollout events."""

    name: WebhookName = Field(
        description="Names the webhook in the operator's events and metrics (a DNS label, unique in the list)."
    )
    format: WebhookFormat = Field(
        default="generic",
        description="The body: generic (JSON with the event and the rollout's state), slack (an incoming "
        "webhook's text and blocks) or teams (a Microsoft Teams Workflows webhook's Adaptive Card).",
    )
    # Not `on`: YAML 1.1 (PyYAML, and the go-yaml behind kubectl) reads a bare `on:` key as the boolean true.
    events: list[NotificationKind] = Field(
        default_factory=lambda: list(NOTIFICATION_KINDS),
        min_length=1,
        max_length=len(NOTIFICATION_KINDS),
        description="The kinds of events sent: started, stepReached, paused, promoted, rolledBack, analysisFailed, "
        "abDecided. Default: all of them.",
        json_schema_extra={"default": list(NOTIFICATION_KINDS)},
    )


class NotificationsSpec(ApiModel):
    """Webhooks that hear about this ModelDeployment's rollouts; delivered in the background, in order per webhook,
    retried with backoff, never holding a rollout up."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.webhooks) || self.webhooks.all(w, self.webhooks.exists_one(o, o.name == w.name))",
                WEBHOOKS_UNIQUE,
                field_path=".webhooks",
            )
        )
    )

    webhooks: list[NotificationWebhook] = Field(
        default_factory=list, max_length=MAX_WEBHOOKS, description="Where this ModelDeployment's events go."
    )
    operator_defaults: bool = Field(
        default=True,
        description="Also send them to the operator's default webhooks (its Helm values' notifications.secretName); "
        "false: only to the webhooks above.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationsSpec:
        names = [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError(WEBHOOKS_UNIQUE)
        return self
