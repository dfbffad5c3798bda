"""Where the operator calls out over HTTP (notifications, confirmation gates): a URL written in the spec, or one kept
in a Secret (a Slack or Teams incoming-webhook URL is itself the credential), and an optional bearer token."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from modelrollout.api.base import ApiModel, Duration, SecretKeyRef, cel, cel_rules

WEBHOOK_URL_ONCE = "set exactly one of url or urlSecret"


class WebhookTarget(ApiModel):
    """One HTTP endpoint the operator POSTs JSON to."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(cel("has(self.url) != has(self.urlSecret)", WEBHOOK_URL_ONCE)),
    )

    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="The endpoint, e.g. http://gate.ci.svc:8080/approve. Use urlSecret when the URL is a secret.",
    )
    url_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding the endpoint's URL (in the ModelDeployment's namespace)."
    )
    bearer_token_secret: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding a bearer token sent as the Authorization header."
    )
    timeout: Duration = Field(default="5s", description="Timeout of one request.")

    @model_validator(mode="after")
    def _one_url(self) -> WebhookTarget:
        if (self.url is None) == (self.url_secret is None):
            raise ValueError(WEBHOOK_URL_ONCE)
        return self
