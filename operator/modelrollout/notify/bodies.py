"""What a webhook receives: our generic JSON document (`Notification`), a Slack incoming webhook's message, or a
Microsoft Teams Workflows webhook's Adaptive Card. Pure; the pass builds the notification from what it knows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from modelrollout.api.notifications import NotificationKind, WebhookFormat
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef, Weights

SCHEMA = "modelrollout.dev/notification/v1"
# Slack refuses a section's text above 3000 characters and a header above 150; an event's message is at most 1024.
SLACK_HEADER_CHARS = 150
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ModelDeploymentRef(_Wire):
    namespace: str
    name: str
    uid: str | None = None


class Revision(_Wire):
    revision: str
    version: str

    @classmethod
    def of(cls, ref: RevisionRef | None) -> Revision | None:
        return None if ref is None else cls(revision=ref.revision, version=ref.version)


class Notification(_Wire):
    """The generic body, and what the Slack and Teams bodies are written from. `id` is the Kubernetes Event's
    name: the same decision, told again (a pass done again after a crash), has the same id, so a receiver can
    drop a repeat (it is also the Idempotency-Key header)."""

    schema_: str = Field(default=SCHEMA, alias="schema")
    id: str
    kinds: list[NotificationKind]
    reason: str
    type: str
    message: str
    time: datetime
    model_deployment: ModelDeploymentRef
    phase: str | None = None
    stable: Revision | None = None
    canary: Revision | None = None
    step: int | None = None
    weights: Weights | None = None

    @classmethod
    def of(
        cls,
        *,
        id_: str,
        kinds: list[NotificationKind],
        event: tuple[str, str, str],
        subject: ModelDeploymentRef,
        status: ModelDeploymentStatus | None,
        time: datetime,
    ) -> Notification:
        """`event`: (type, reason, message); `status`: the decision's status, as the pass records it."""
        type_, reason, message = event
        return cls(
            id=id_,
            kinds=kinds,
            reason=reason,
            type=type_,
            message=message,
            time=time,
            model_deployment=subject,
            phase=status.phase if status else None,
            stable=Revision.of(status.stable) if status else None,
            canary=Revision.of(status.canary) if status else None,
            step=status.current_step if status else None,
            weights=status.weights if status else None,
        )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @property
    def title(self) -> str:
        return f"{self.model_deployment.namespace}/{self.model_deployment.name}: {self.reason}"

    def facts(self) -> list[tuple[str, str]]:
        """What the chat bodies show beside the message, in a fixed order."""
        found = [("Kinds", ", ".join(self.kinds))]
        if self.phase:
            found.append(("Phase", self.phase))
        if self.stable:
            found.append(("Stable", f"version {self.stable.version} ({self.stable.revision})"))
        if self.canary:
            found.append(("Candidate", f"version {self.canary.version} ({self.canary.revision})"))
        if self.weights is not None and self.canary is not None:
            weights = f"stable {self.weights.stable}%, candidate {self.weights.canary}%"
            found.append(("Traffic", weights + (f", mirror {self.weights.mirror}%" if self.weights.mirror else "")))
        if self.step is not None and self.canary is not None:
            found.append(("Step", str(self.step)))
        return found


def slack(n: Notification) -> dict[str, Any]:
    """An incoming webhook's message: `text` is the fallback (notifications, old clients), `blocks` the layout."""
    facts = [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in n.facts()]
    return {
        "text": f"{n.title}: {n.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": n.title[:SLACK_HEADER_CHARS]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": n.message}, "fields": facts[:10]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{n.type} event {n.id} at {_when(n)}"}]},
        ],
    }


def teams(n: Notification) -> dict[str, Any]:
    """A Teams Workflows webhook's message ("When a Teams webhook request is received"): one Adaptive Card."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": n.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": "Attention" if n.type == "Warning" else "Default",
            },
            {"type": "TextBlock", "text": n.message, "wrap": True},
            {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in n.facts()]},
            {"type": "TextBlock", "text": f"event {n.id} at {_when(n)}", "isSubtle": True, "size": "Small"},
        ],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


def render(format_: WebhookFormat, n: Notification) -> dict[str, Any]:
    if format_ == "slack":
        return slack(n)
    if format_ == "teams":
        return teams(n)
    return n.to_wire()


def _when(n: Notification) -> str:
    return n.time.strftime("%Y-%m-%dT%H:%M:%SZ")
