"""Operator configuration, grouped the way Kopf groups its own settings (`settings.watching...`,
`settings.analysis...`): one group per concern, each read from MODELROLLOUT_* environment variables. The variable
names do not carry the group (MODELROLLOUT_PROMETHEUS_URL, not MODELROLLOUT_ANALYSIS__PROMETHEUS_URL): they are
what deployments already set, and a group is how the code finds a setting, not how an operator is configured.
The batch and stream modes add their groups here."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modelrollout.api.base import Duration
from modelrollout.api.notifications import NOTIFICATION_KINDS, NotificationKind, WebhookFormat, WebhookName


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELROLLOUT_", frozen=True, extra="ignore")


class WatchingSettings(_Group):
    """What the operator watches, and how often it looks at everything again."""

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; all namespaces when empty (needs cluster RBAC)."
    )
    reconcile_interval_s: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="Every ModelDeployment is looked at again within this period (spread over it, with jitter), "
        "besides the watch events that trigger passes at once: a safety net that reads memory and writes only what "
        "differs.",
    )


class PlanningSettings(_Group):
    """Defaults and limits of the objects and status a pass plans."""

    default_image: str = Field(
        default="ghcr.io/modelrollout/model-server:0.1.0",
        description="Model server image for ModelDeployments that do not set spec.model.image.",
    )
    progress_deadline_s: int = Field(
        default=600, ge=10, description="Seconds a new revision may take to become available before it is failed."
    )
    history_limit: int = Field(
        default=10, ge=1, le=100, description="Finished rollouts kept in status.history (the only such limit)."
    )


class AnalysisSettings(_Group):
    """The Prometheus analysis reads when a ModelDeployment names none."""

    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Prometheus for analysis when a ModelDeployment sets no spec.rollout.analysis.prometheus.",
    )
    prometheus_scrape_interval_s: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="Scrape interval of that Prometheus: rate windows are never shorter than four of them.",
    )


class ApplyingSettings(_Group):
    """How children are written, and how long a refused write waits before it is tried again."""

    field_manager: str = Field(default="modelrollout", description="Server-side apply field manager.")
    apply_retry_initial_s: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="First retry delay of a ModelDeployment whose child object the API server refused; doubles.",
    )
    apply_retry_max_s: float = Field(
        default=300.0, gt=0, le=3600, description="Longest retry delay of such a ModelDeployment."
    )
    max_concurrent_passes: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Reconcile passes running at once across ModelDeployments (each waits on the API server most "
        "of its time; the token bucket, not this, bounds the requests).",
    )
    api_qps: float = Field(
        default=200.0,
        gt=0,
        le=10000,
        description="Requests a second to the API server, on average (a token bucket over every request, so no "
        "fleet and no bug floods it; client-go's --kube-api-qps).",
    )
    api_burst: int = Field(
        default=400, ge=1, le=100000, description="Requests allowed at once after a quiet spell (--kube-api-burst)."
    )
    api_max_retries: int = Field(
        default=5,
        ge=0,
        le=100,
        description="Retries of a request the API server shed (HTTP 429, or a 5xx with Retry-After), each after "
        "its Retry-After, doubled per attempt.",
    )


class EndpointSettings(_Group):
    """The operator's own HTTP endpoints, served on every replica, leader or standby (`probes`)."""

    liveness_port: int = Field(
        default=8081, ge=0, le=65535, description="Port of /healthz and /readyz (the probes); 0 disables them."
    )
    metrics_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the operator's own /metrics (telemetry.py); 0 disables it."
    )


class LeaderElectionSettings(_Group):
    """Which replica runs the writers: the holder of a coordination.k8s.io/v1 Lease (`leader`). The durations
    are client-go's defaults and mean the same: a standby takes over at most about lease_duration_s + 2.4 x
    retry_period_s after the leader died (19.8 s by default), at once after a graceful shutdown (the leader
    releases the lease), and a leader that cannot renew for renew_deadline_s exits before anyone else may
    take over."""

    leader_election: bool = Field(
        default=True,
        description="Elect a leader; false runs the writers at once, for a single replica only (never two then).",
    )
    lease_name: str = Field(default="modelrollout-operator", min_length=1, description="Name of the Lease.")
    lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the Lease. Default: the operator's own (POD_NAMESPACE, else the ServiceAccount's "
        "namespace in a pod), else the one watched namespace; required out of cluster watching several or all.",
    )
    leader_identity: str | None = Field(
        default=None,
        description="holderIdentity of this process; default <POD_NAME or hostname>_<random>. Must be unique "
        "among running replicas.",
    )
    lease_duration_s: int = Field(
        default=15, ge=1, le=3600, description="How long a lease not renewed lasts (whole seconds: the Lease's unit)."
    )
    renew_deadline_s: float = Field(
        default=10.0, gt=0, le=3600, description="The leader exits when it has not renewed for this long."
    )
    retry_period_s: float = Field(
        default=2.0, gt=0, le=600, description="Between two attempts to renew (leader) or acquire (standby)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        # client-go's checks: the leader must give up before its lease can expire, and have time to retry.
        if not self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("renew_deadline_s must be shorter than lease_duration_s")
        if not self.renew_deadline_s > 1.2 * self.retry_period_s:
            raise ValueError("renew_deadline_s must be longer than 1.2 x retry_period_s")
        return self


class LoggingSettings(_Group):
    """How the operator logs (to stderr)."""

    log_format: Literal["text", "json"] = Field(
        default="text", description="text: one readable line per record; json: one JSON object per line (`logs`)."
    )


class DefaultWebhook(BaseModel):
    """One of the operator's default webhooks: every ModelDeployment's events go to it unless its
    spec.notifications.operatorDefaults is false. The whole list is a secret (it comes from a Secret through the
    environment), so the URL and the token are written in it, not referred to."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    name: WebhookName
    url: str = Field(pattern=r"^https?://", max_length=2048, repr=False)
    format: WebhookFormat = "generic"
    events: list[NotificationKind] = Field(default_factory=lambda: list(NOTIFICATION_KINDS), min_length=1)
    bearer_token: str | None = Field(default=None, min_length=1, repr=False)
    timeout: Duration = "5s"


class NotificationSettings(_Group):
    """Rollout notifications (`notify`): the operator's default webhooks, and how hard a delivery is tried. A
    delivery never holds a rollout up: it runs in the background, in order per webhook."""

    default_webhooks: Annotated[list[DefaultWebhook], NoDecode] = Field(
        default_factory=list,
        description="The operator's default webhooks, a YAML or JSON list of {name, url, format, events, "
        "bearerToken, timeout}; the chart fills it from the Secret its notifications.secretName names.",
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts of one notification to one webhook before it is given up."
    )
    notify_max_age_s: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="A notification not delivered this long after its event is given up (a receiver down for "
        "longer misses it; the ModelDeployment gets a NotificationFailed event).",
    )
    notify_retry_initial_s: float = Field(
        default=1.0, gt=0, le=600, description="First retry delay of a notification; doubles, with jitter."
    )
    notify_retry_max_s: float = Field(
        default=60.0, gt=0, le=3600, description="Longest retry delay (a receiver's Retry-After may ask for more)."
    )
    notify_queue_limit: int = Field(
        default=1000,
        ge=1,
        le=100000,
        description="Notifications waiting per webhook; beyond it the oldest is dropped (counted and logged).",
    )
    notify_dedupe_limit: int = Field(
        default=10000,
        ge=1,
        le=1000000,
        description="Notification ids remembered per operator process so each is delivered once per webhook.",
    )

    @field_validator("default_webhooks", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        # YAML is what a Secret's stringData holds comfortably; JSON is YAML too.
        if isinstance(value, str):
            return yaml.safe_load(value) or []
        return value

    @field_validator("default_webhooks")
    @classmethod
    def _unique(cls, value: list[DefaultWebhook]) -> list[DefaultWebhook]:
        names = [w.name for w in value]
        if len(names) != len(set(names)):
            raise ValueError("default webhook names must be unique")
        return value


class OperatorSettings(BaseModel):
    """Everything the operator reads at start-up; immutable afterwards. `OperatorSettings()` reads every group
    from the environment."""

    model_config = ConfigDict(frozen=True)

    watching: WatchingSettings = Field(default_factory=WatchingSettings)
    planning: PlanningSettings = Field(default_factory=PlanningSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    applying: ApplyingSettings = Field(default_factory=ApplyingSettings)
    endpoints: EndpointSettings = Field(default_factory=EndpointSettings)
    leader: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
