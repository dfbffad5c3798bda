"""The Helm chart's values, as a pydantic model: `values.schema.json` and `values.yaml` are generated from it
(`make chart`), the way the CRD is generated from the API models, so a wrong value fails at `helm install` with
the field named, and the defaults a user reads are the ones the chart renders.

`config` embeds the operator's own settings (`modelrollout.settings`): every group and field of
`OperatorSettings`, with its description, bounds and default, becomes `config.<group>.<field>` (camelCase) and
reaches the operator as its MODELROLLOUT_* variable. Left out: `watching.namespaces` (the chart's `watchNamespaces`
sets it, because it also decides the RBAC: Roles in those namespaces, or cluster-wide), the Lease's namespace and
holder identity (each pod's own, from the downward API) and the default notification webhooks (a secret: the
chart's `notifications.secretName` passes a Secret's key to the operator).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from modelrollout.api.placement import DNS_SUBDOMAIN, LABEL_VALUE, QUALIFIED_NAME, Toleration
from modelrollout.settings import OperatorSettings

# Settings the chart sets itself (see the module docstring): the namespaces from `watchNamespaces`; the Lease's
# namespace and holder identity from the pod (POD_NAMESPACE, POD_NAME), because the chart's leader Role is in the
# release's namespace and every replica needs an identity of its own.
CHART_OWNED_SETTINGS = {
    ("watching", "namespaces"),
    ("leader", "lease_namespace"),
    ("leader", "leader_identity"),
    # Secret: from `notifications.secretName` by a secretKeyRef, never written in values.
    ("notifications", "default_webhooks"),
}
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_FREE_FORM: dict[str, Any] = {"type": "object"}

Name = Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]
Labels = dict[Annotated[str, Field(pattern=QUALIFIED_NAME)], Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]]
Annotations = dict[Annotated[str, Field(pattern=QUALIFIED_NAME)], str]


class Values(BaseModel):
    """Base of every values object: camelCase keys, unknown keys refused (a typo is an error, not a no-op)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _settings_values(group: type[BaseSettings], name: str) -> type[Values]:
    """The values object of one settings group: the same fields, bounds, descriptions and defaults."""
    fields: dict[str, Any] = {}
    for field_name, info in group.model_fields.items():
        if (name, field_name) in CHART_OWNED_SETTINGS:
            continue
        fields[field_name] = (info.annotation, FieldInfo.merge_field_infos(info))
    model: type[Values] = create_model(
        f"{group.__name__.removesuffix('Settings')}Values", __base__=Values, __doc__=group.__doc__, **fields
    )
    return model


def _settings_groups() -> Iterator[tuple[str, type[BaseSettings]]]:
    for name, info in OperatorSettings.model_fields.items():
        group = info.annotation
        if not (isinstance(group, type) and issubclass(group, BaseSettings)):
            raise TypeError(f"OperatorSettings.{name} is not a settings group")
        yield name, group


def _config_values() -> type[Values]:
    groups: dict[str, Any] = {}
    for name, group in _settings_groups():
        values = _settings_values(group, name)
        groups[name] = (values, Field(default_factory=values))
    model: type[Values] = create_model(
        "ConfigValues",
        __base__=Values,
        __doc__="The operator's settings (modelrollout.settings), one object per group; each field reaches the "
        "operator as its MODELROLLOUT_* environment variable.",
        **groups,
    )
    return model


ConfigValues = _config_values()


def settings_env() -> dict[str, dict[str, str]]:
    """config.<group>.<field> (the values' camelCase keys) -> the operator's environment variable."""
    env: dict[str, dict[str, str]] = {}
    for name, group in _settings_groups():
        prefix = str(group.model_config.get("env_prefix", ""))
        env[to_camel(name)] = {
            to_camel(field): f"{prefix}{field}".upper()
            for field in group.model_fields
            if (name, field) not in CHART_OWNED_SETTINGS
        }
    return env


class Image(Values):
    repository: str = Field(min_length=1, description="Image repository of the operator.")
    tag: str = Field(default="", description="Image tag; empty: the chart's appVersion.")
    digest: str = Field(default="", pattern=r"^(sha256:[a-f0-9]{64})?$", description="Pin by digest (wins over tag).")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(default="IfNotPresent", description="Pull policy.")


class ServiceAccount(Values):
    create: bool = Field(default=True, description="Create the operator's ServiceAccount.")
    name: str = Field(default="", description="Its name; empty: the release's full name.")
    annotations: Annotations = Field(default_factory=dict, description="e.g. a cloud IAM role binding.")


class Rbac(Values):
    create: bool = Field(default=True, description="Create the Roles and bindings the operator needs.")
    secret_names: list[Name] = Field(
        default_factory=list,
        description="Cluster-wide mode only: the Secrets (by name, in any watched namespace) the operator may read "
        "for spec.rollout.analysis.prometheus.bearerTokenSecret and the URLs and tokens of "
        "spec.notifications.webhooks. Empty: it reads no Secret at all. With watchNamespaces set, it may read "
        "Secrets in those namespaces only.",
    )


class Notifications(Values):
    secret_name: str = Field(
        default="",
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        description="A Secret in the release's namespace holding the operator's default notification webhooks (a "
        "YAML list of {name, url, format, events, bearerToken, timeout}): every ModelDeployment's rollout events go "
        "to them unless its spec.notifications.operatorDefaults is false. Empty: no default webhooks. Read at "
        "start-up: restart the operator after changing it.",
    )
    secret_key: str = Field(default="webhooks.yaml", min_length=1, description="The key of that Secret.")
    optional: bool = Field(
        default=False, description="Start without default webhooks when the Secret or key is missing."
    )


class Crds(Values):
    install: bool = Field(
        default=True,
        description="Install and upgrade the ModelDeployment CRD with the release (a template, so `helm upgrade` "
        "updates it; kept on `helm uninstall`).",
    )


class MetricsService(Values):
    enabled: bool = Field(default=True, description="A ClusterIP Service in front of the operator's /metrics.")
    port: int = Field(default=8080, ge=1, le=65535, description="The Service's port.")
    annotations: Annotations = Field(default_factory=dict, description="Annotations of the Service.")


class Monitor(Values):
    enabled: bool = Field(default=False, description="Create it (needs the Prometheus Operator's CRDs).")
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval.")
    scrape_timeout: str = Field(default="10s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape timeout.")
    labels: Labels = Field(default_factory=dict, description="Labels your Prometheus selects monitors by.")


class Metrics(Values):
    service: MetricsService = Field(default_factory=MetricsService)
    service_monitor: Monitor = Field(default_factory=Monitor, description="A ServiceMonitor of the metrics Service.")
    pod_monitor: Monitor = Field(default_factory=Monitor, description="A PodMonitor of every operator pod.")


class Dashboards(Values):
    """Grafana dashboards (fleet, one ModelDeployment) as ConfigMaps the Grafana sidecar loads (kube-prometheus-stack's
    finds label grafana_dashboard: "1" by default). They read the operator's series, which need the operator scraped
    with honor_labels (metrics.serviceMonitor or metrics.podMonitor do), and the model servers' and router's."""

    enabled: bool = Field(default=False, description="Create the dashboards' ConfigMaps.")
    label: str = Field(
        default="grafana_dashboard", pattern=QUALIFIED_NAME, description="The label the Grafana sidecar selects by."
    )
    label_value: str = Field(default="1", max_length=63, pattern=LABEL_VALUE, description="That label's value.")
    namespace: str = Field(
        default="", max_length=63, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        description="Namespace of the ConfigMaps; empty: the release's (the sidecar must search it).",
    )  # fmt: skip
    labels: Labels = Field(default_factory=dict, description="More labels of the ConfigMaps.")
    annotations: Annotations = Field(
        default_factory=dict, description="Annotations of the ConfigMaps, e.g. {grafana_folder: ModelRollout}."
    )


class PodDisruptionBudget(Values):
    enabled: bool = Field(default=True, description="Create a PodDisruptionBudget when replicaCount > 1.")
    min_available: int = Field(default=1, ge=0, description="Pods that must stay up through a voluntary disruption.")


class NetworkPolicy(Values):
    enabled: bool = Field(
        default=True,
        description="Admit traffic to the operator's pods on its metrics and health ports only (all egress stays "
        "open: it talks to the API server and to Prometheus).",
    )
    metrics_from: list[dict[str, Any]] = Field(
        default_factory=list,
        description="NetworkPolicyPeers allowed to scrape /metrics; empty: any.",
        json_schema_extra={"items": _FREE_FORM},
    )


class Probe(Values):
    initial_delay_seconds: int = Field(default=0, ge=0)
    period_seconds: int = Field(default=10, ge=1)
    timeout_seconds: int = Field(default=5, ge=1)
    failure_threshold: int = Field(default=3, ge=1)


class Resources(Values):
    requests: dict[str, str | int] = Field(default_factory=dict, description="e.g. {cpu: 100m, memory: 256Mi}.")
    limits: dict[str, str | int] = Field(default_factory=dict, description="e.g. {cpu: '1', memory: 512Mi}.")


def _default_resources() -> Resources:
    return Resources(
        requests={"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "64Mi"},
        limits={"cpu": "1", "memory": "512Mi", "ephemeral-storage": "256Mi"},
    )


class EnvVar(Values):
    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str | None = None
    value_from: dict[str, Any] | None = Field(default=None, json_schema_extra=_FREE_FORM)


class ChartValues(Values):
    """Everything `helm install -f values.yaml` may set."""

    image: Image = Field(default_factory=lambda: Image(repository="ghcr.io/modelrollout/operator"))
    image_pull_secrets: list[Name] = Field(default_factory=list, description="Secrets to pull the operator image.")
    name_override: str = Field(default="", max_length=53, description="Replaces the chart name in object names.")
    fullname_override: str = Field(default="", max_length=63, description="Replaces the release's full name.")
    replica_count: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Operator pods; exactly one is active (it holds the Lease), the others stand by.",
    )
    watch_namespaces: list[Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]] = Field(
        default_factory=list,
        description="Namespaces the operator watches, with a Role in each; empty: every namespace (a ClusterRole).",
    )
    config: ConfigValues = Field(  # type: ignore[valid-type]
        default_factory=ConfigValues, description=ConfigValues.__doc__
    )
    extra_env: list[EnvVar] = Field(default_factory=list, description="More environment variables of the operator.")
    extra_args: list[str] = Field(default_factory=list, description="More arguments of `modelrollout run`.")
    service_account: ServiceAccount = Field(default_factory=ServiceAccount)
    rbac: Rbac = Field(default_factory=Rbac)
    notifications: Notifications = Field(
        default_factory=Notifications, description="The operator's default notification webhooks."
    )
    crds: Crds = Field(default_factory=Crds)
    metrics: Metrics = Field(default_factory=Metrics)
    dashboards: Dashboards = Field(default_factory=Dashboards)
    pod_disruption_budget: PodDisruptionBudget = Field(default_factory=PodDisruptionBudget)
    network_policy: NetworkPolicy = Field(default_factory=NetworkPolicy)
    liveness_probe: Probe = Field(default_factory=Probe, description="Probe of /healthz.")
    readiness_probe: Probe = Field(default_factory=Probe, description="Probe of /readyz.")
    resources: Resources = Field(default_factory=_default_resources)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(
        default_factory=dict,
        description="Empty: a preferred anti-affinity spreads the replicas over nodes.",
        json_schema_extra=_FREE_FORM,
    )
    topology_spread_constraints: list[dict[str, Any]] = Field(
        default_factory=list, json_schema_extra={"items": _FREE_FORM}
    )
    priority_class_name: str = Field(default="", description="PriorityClass of the operator pods.")
    pod_labels: Labels = Field(default_factory=dict, description="Extra labels of the operator pods.")
    pod_annotations: Annotations = Field(default_factory=dict, description="Extra annotations of the operator pods.")
