"""Which webhooks hear of a notification: a ModelDeployment's own (spec.notifications.webhooks) and the operator's
defaults (settings), each filtered by the kinds it asked for. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from modelrollout.api.notifications import NOTIFICATION_KINDS, NotificationKind, NotificationsSpec, WebhookFormat
from modelrollout.api.webhooks import WebhookTarget
from modelrollout.settings import DefaultWebhook

Source = Literal["spec", "operator"]
# A webhook's delivery lane: (source, namespace, ModelDeployment, webhook name); a default webhook has one lane for
# every ModelDeployment ("", ""), so its receiver gets events in the order they happened across the fleet.
LaneKey = tuple[Source, str, str, str]


@dataclass(frozen=True)
class Route:
    """One webhook a notification goes to, as configured when the event was decided."""

    source: Source
    namespace: str
    owner: str  # the ModelDeployment of a spec webhook; "" for a default one
    name: str
    format: WebhookFormat
    target: WebhookTarget | DefaultWebhook
    at: str  # where it is configured, named in errors: spec.notifications.webhooks[0], or the operator's setting

    @property
    def lane(self) -> LaneKey:
        return (self.source, self.namespace, self.owner, self.name)


def ordered(kinds: frozenset[NotificationKind]) -> list[NotificationKind]:
    """Kinds in the documented order, so a body says them the same way every time."""
    return [kind for kind in NOTIFICATION_KINDS if kind in kinds]


def routes(
    namespace: str,
    name: str,
    spec: NotificationsSpec | None,
    defaults: Sequence[DefaultWebhook],
    kinds: frozenset[NotificationKind],
) -> list[Route]:
    """The webhooks that want a notification of `kinds`: the spec's, then the operator's unless the spec opted
    out. Nothing for an event of no kind."""
    if not kinds:
        return []
    found = [
        Route("spec", namespace, name, hook.name, hook.format, hook, f"spec.notifications.webhooks[{index}]")
        for index, hook in enumerate(spec.webhooks if spec else [])
        if kinds & set(hook.events)
    ]
    if spec is None or spec.operator_defaults:
        found += [
            Route("operator", "", "", hook.name, hook.format, hook, f"the operator's default webhook {hook.name!r}")
            for hook in defaults
            if kinds & set(hook.events)
        ]
    return found
