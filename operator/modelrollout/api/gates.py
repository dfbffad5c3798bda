"""Gates a rollout must pass (`spec.rollout.gates`), as Flagger's confirm-rollout, pre-rollout and
confirm-promotion webhooks: an outside system says yes before the candidate starts and before it is promoted, and a
smoke or load test Job must succeed against the candidate before it gets any traffic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelrollout.api.base import ApiModel, Duration
from modelrollout.api.webhooks import WebhookTarget

GateName = Literal["confirmRollout", "preRollout", "confirmPromotion"]
OnTimeout = Literal["abort", "proceed"]


class ConfirmGate(WebhookTarget):
    """A webhook asked (POST, JSON: the ModelDeployment, the candidate and the gate) until it answers 2xx. Any
    other answer, or none, means not yet: asked again every `interval`."""

    interval: Duration = Field(default="30s", description="How often the webhook is asked again while it says no.")
    wait_up_to: Duration | None = Field(
        default=None,
        description="How long to wait for a yes before onTimeout applies; unset: wait until the webhook says yes "
        "(or a user promotes, aborts or undoes).",
    )
    on_timeout: OnTimeout = Field(
        default="abort",
        description="After waitUpTo: abort (roll back; stable keeps serving) or proceed (as if the webhook said yes).",
    )


class EnvVar(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Name.")
    value: str = Field(default="", max_length=4096, description="Value.")


class HookJob(ApiModel):
    """A Job run against the candidate once its first pod is ready and before it gets any traffic (a smoke test, a
    load test). It fails the rollout (roll back) unless it succeeds. Its pod gets MODEL_URL (the candidate's own
    Service, `<name>-canary`), MODEL_NAME, MODEL_VERSION and REVISION in its environment."""

    image: str | None = Field(
        default=None, max_length=1024, description="The container image; unset: the model server's image."
    )
    command: list[str] = Field(
        min_length=1, max_length=64, description="Entry point, e.g. [sh, -c, 'curl -fsS $MODEL_URL/v2/health/ready']."
    )
    args: list[str] = Field(default_factory=list, max_length=256, description="Arguments of the command.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="More environment variables.")
    timeout: Duration = Field(
        default="5m", description="The Job's activeDeadlineSeconds: a hook still running then has failed."
    )
    retries: int = Field(default=0, ge=0, le=10, description="The Job's backoffLimit: failed pods retried this often.")


class Gates(ApiModel):
    """What must say yes, in order: confirmRollout (before the candidate runs), preRollout (before it gets traffic),
    confirmPromotion (after the last step, before promotion). The first revision passes no gate: there is nothing
    to protect yet. `kubectl modelrollout promote` passes the gate the rollout waits at."""

    confirm_rollout: ConfirmGate | None = Field(default=None, description="Asked before the candidate's pods start.")
    pre_rollout: HookJob | None = Field(
        default=None, description="A Job run against the candidate before it gets traffic; its failure rolls back."
    )
    confirm_promotion: ConfirmGate | None = Field(
        default=None, description="Asked after the last step, before the candidate is promoted."
    )

    def configured(self) -> tuple[GateName, ...]:
        """The gates set, in the order a rollout passes them."""
        order: tuple[tuple[GateName, object | None], ...] = (
            ("confirmRollout", self.confirm_rollout),
            ("preRollout", self.pre_rollout),
            ("confirmPromotion", self.confirm_promotion),
        )
        return tuple(name for name, gate in order if gate is not None)

    def confirm(self, name: GateName) -> ConfirmGate | None:
        return (
            self.confirm_rollout
            if name == "confirmRollout"
            else self.confirm_promotion
            if name == "confirmPromotion"
            else None
        )
