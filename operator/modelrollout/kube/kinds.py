"""Every Kubernetes kind the operator touches, and what it does with each: the one table the API client's paths,
the modes' owned kinds, the child watches and the RBAC manifest are all derived from (`modelrollout.rbac`)."""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.resource import GROUP, KIND, PLURAL, VERSION

# Server-side apply creates on the first apply and patches after; pruning deletes; one label-selected watch per
# kind (list, then watch) keeps what exists in the operator's index.
OWNED_VERBS = ("list", "watch", "create", "patch", "delete")


@dataclass(frozen=True, slots=True)
class Kind:
    name: str  # the kind, e.g. Deployment
    group: str  # "" for the core group
    version: str
    plural: str

    @property
    def prefix(self) -> str:
        """The API path before /namespaces/...: /api/v1 for the core group, /apis/<group>/<version> otherwise."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


@dataclass(frozen=True, slots=True)
class Grant:
    """What the operator does with one kind (or one of its subresources), and why: a rule of its ClusterRole (or,
    for `LEADER_GRANTS`, of the Role in its own namespace)."""

    kind: Kind
    verbs: tuple[str, ...]
    why: str
    subresource: str | None = None

    @property
    def resource(self) -> str:
        return f"{self.kind.plural}/{self.subresource}" if self.subresource else self.kind.plural


def _kind(name: str, group: str, version: str, plural: str) -> Kind:
    return Kind(name=name, group=group, version=version, plural=plural)


MODEL_DEPLOYMENT = _kind(KIND, GROUP, VERSION, PLURAL)
DEPLOYMENT = _kind("Deployment", "apps", "v1", "deployments")
SERVICE = _kind("Service", "", "v1", "services")
CONFIG_MAP = _kind("ConfigMap", "", "v1", "configmaps")
SECRET = _kind("Secret", "", "v1", "secrets")
SERVICE_ACCOUNT = _kind("ServiceAccount", "", "v1", "serviceaccounts")
ROLE = _kind("Role", "rbac.authorization.k8s.io", "v1", "roles")
ROLE_BINDING = _kind("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings")
POD = _kind("Pod", "", "v1", "pods")
EVENT = _kind("Event", "", "v1", "events")
NAMESPACE = _kind("Namespace", "", "v1", "namespaces")
CRD = _kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions")
HPA = _kind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers")
PDB = _kind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets")
CRON_JOB = _kind("CronJob", "batch", "v1", "cronjobs")
JOB = _kind("Job", "batch", "v1", "jobs")
SCALED_OBJECT = _kind("ScaledObject", "keda.sh", "v1alpha1", "scaledobjects")
HTTP_ROUTE = _kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes")
VIRTUAL_SERVICE = _kind("VirtualService", "networking.istio.io", "v1", "virtualservices")
DESTINATION_RULE = _kind("DestinationRule", "networking.istio.io", "v1", "destinationrules")
LEASE = _kind("Lease", "coordination.k8s.io", "v1", "leases")

ALL_KINDS = (
    MODEL_DEPLOYMENT,
    SCALED_OBJECT,
    DEPLOYMENT,
    SERVICE,
    CONFIG_MAP,
    SECRET,
    SERVICE_ACCOUNT,
    ROLE,
    ROLE_BINDING,
    POD,
    EVENT,
    NAMESPACE,
    CRD,
    HPA,
    PDB,
    CRON_JOB,
    JOB,
    HTTP_ROUTE,
    VIRTUAL_SERVICE,
    DESTINATION_RULE,
    LEASE,
)
BY_NAME: dict[str, Kind] = {kind.name: kind for kind in ALL_KINDS}

# What the operator does whatever the modes: the grants of the operator core (Kopf, status, events, analysis).
CORE_GRANTS = (
    Grant(
        MODEL_DEPLOYMENT,
        ("get", "list", "watch", "patch"),
        "The resource itself: watched into the operator's index, and annotated by the verb hand-shake (removed "
        "once applied).",
    ),
    Grant(
        MODEL_DEPLOYMENT,
        ("patch",),
        "Status is written by server-side apply through the subresource.",
        subresource="status",
    ),
    Grant(
        SECRET,
        ("get",),
        "The Prometheus bearer token named by spec.rollout.analysis.prometheus.bearerTokenSecret, and the webhook "
        "URLs and tokens named by spec.notifications.webhooks (urlSecret, bearerTokenSecret).",
    ),
    Grant(CRD, ("list", "watch"), "Kopf observes which resources exist (cluster-scoped, read-only)."),
    Grant(NAMESPACE, ("list", "watch"), "Kopf observes which namespaces exist (cluster-scoped, read-only)."),
    Grant(EVENT, ("create",), "A Kubernetes Event for every decision (ours and Kopf's)."),
    Grant(
        POD,
        ("list", "watch"),
        "The pods of our Deployments and Jobs (label-selected, kept without their spec): why a revision cannot "
        "become available (image pull, crash loop), how a batch run ended (its termination message).",
    ),
)

# What leader election needs, in the operator's OWN namespace only (the lease namespace, see
# `leader.election.lease_namespace`): a namespaced Role and RoleBinding, never part of the ClusterRole that
# CORE_GRANTS and the modes' grants make. Writes are merge patches conditional on the resourceVersion read
# (`leader.lease.KubeLease`), hence patch rather than update.
LEADER_GRANTS = (
    Grant(
        LEASE,
        ("get", "create", "patch"),
        "Leader election: read the operator's Lease, create it the first time, renew or take it over (a patch "
        "conditional on its resourceVersion) and release it on shutdown.",
    ),
)
