"""Desired objects for online serving: a Deployment per revision, the Services, autoscaling and disruption budget.

Every builder returns a complete server-side-apply body (a plain dict): what we send is exactly what we own, and
fields we leave out (e.g. `replicas` under an autoscaler) stay with whoever else manages them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelrollout.api.base import duration_seconds
from modelrollout.api.model import ModelSpec
from modelrollout.api.resource import API_VERSION, KIND
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.planning.names import (
    ANNOTATION_REPLICAS,
    LABEL_ROLE,
    MANAGED_BY,
    ServiceRole,
    fallback_name,
    selector,
    service_name,
    workload_name,
)
from modelrollout.planning.placement import place

HTTP_PORT = 8080
SERVICE_PORT = 80
# The model server's gRPC (Open Inference Protocol), its default port; the Services expose it as it is.
GRPC_PORT = 8081
CONTAINER = "model-server"
RUN_AS_USER = 10001
# Where a remote model is downloaded to: the root filesystem is read-only.
MODEL_DIR = "/var/run/modelserver"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the objects; its uid makes the garbage collector delete them with it."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**MANAGED_BY, **labels},
            "ownerReferences": [self.reference()],
        }


# Every container we run: non-root, read-only root filesystem, no privilege escalation, no capabilities.
LOCKED_DOWN_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
LOCKED_DOWN_POD: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
SCRAPED: dict[str, str] = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(HTTP_PORT),
    "prometheus.io/path": "/metrics",
}


def model_env(model: ModelSpec, *, prefix: str = "MODELSERVER_MODEL_") -> list[dict[str, Any]]:
    """Which model to load, as `modelserver serve` and `modelserver batch` both read it (their ModelSettings);
    another `prefix` names the same model for another role (the batch scorer's reference model)."""
    env: list[dict[str, Any]] = [
        {"name": f"{prefix}NAME", "value": model.name},
        {"name": f"{prefix}VERSION", "value": model.version},
        {"name": f"{prefix}URI", "value": model.uri},
        {"name": f"{prefix}FORMAT", "value": model.format},
    ]
    if model.class_name:
        env.append({"name": f"{prefix}CLASS", "value": model.class_name})
    if model.sha256:
        env.append({"name": f"{prefix}SHA256", "value": model.sha256})
    return env


def model_server_env(spec: ModelDeploymentSpec, model: ModelSpec | None = None) -> list[dict[str, Any]]:
    """The model server reads its whole configuration from MODELSERVER_* variables (pydantic-settings); `model`
    (default: the spec's) is the one it serves."""
    model = model or spec.model
    env = [
        *model_env(model),
        {"name": "MODELSERVER_PORT", "value": str(HTTP_PORT)},
        {"name": "MODELSERVER_GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "MODELSERVER_DOWNLOAD_DIR", "value": MODEL_DIR},
    ]
    batching = spec.online.batching if spec.online else None
    if batching:
        env += [
            {"name": "MODELSERVER_BATCHING", "value": "true"},
            {"name": "MODELSERVER_MAX_BATCH_SIZE", "value": str(batching.max_batch_size)},
            {"name": "MODELSERVER_MAX_BATCH_WAIT_MS", "value": f"{duration_seconds(batching.max_wait) * 1000:g}"},
        ]
    # The user's variables come last so they can override ours (e.g. MODELSERVER_LOG_LEVEL).
    env += [e.to_wire() for e in model.env]
    return env


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _pod_template(
    spec: ModelDeploymentSpec, *, labels: dict[str, str], image: str, model: ModelSpec | None = None
) -> dict[str, Any]:
    model = model or spec.model
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "args": ["serve"],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "env": model_server_env(spec, model),
        # Model loading can take minutes; the startup probe holds liveness off until the server is up.
        "startupProbe": _probe("/v2/health/live", period=2, failures=150),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        "readinessProbe": _probe("/v2/health/ready", period=2, failures=2),
        "securityContext": LOCKED_DOWN_CONTAINER,
        "volumeMounts": [{"name": "models", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    if model.resources:
        container["resources"] = model.resources.to_wire()
    template = {
        "metadata": {
            "labels": {**MANAGED_BY, **labels},
            "annotations": dict(SCRAPED),
        },
        "spec": {
            "containers": [container],
            "securityContext": LOCKED_DOWN_POD,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "volumes": [{"name": "models", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
        },
    }
    return place(template, spec.pod, model_pods=True)


def _deployment(
    owner: Owner,
    *,
    revision: str,
    template: dict[str, Any],
    replicas: int,
    autoscaled: bool,
    progress_deadline_s: int,
) -> dict[str, Any]:
    labels = selector(owner.name, "online", revision)
    metadata = owner.metadata(workload_name(owner.name, revision), labels)
    # The replica count the rollout wants for this revision, kept on the object: the next pass re-applies it
    # (and so undoes a hand-made `kubectl scale`) without needing the step that decided it.
    metadata["annotations"] = {ANNOTATION_REPLICAS: str(replicas)}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": labels},
            "revisionHistoryLimit": 1,
            "progressDeadlineSeconds": progress_deadline_s,
            # A revision's pods only change when the operator itself changes; never drop capacity for that.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": template,
        },
    }
    # Under an autoscaler the replica count is the HPA's; applying it here would fight the HPA. A revision at
    # zero has no HPA (an HPA cannot scale to zero), so zero is always ours to set.
    if not autoscaled or replicas == 0:
        body["spec"]["replicas"] = replicas
    return body


def build_deployment(
    spec: ModelDeploymentSpec,
    owner: Owner,
    *,
    revision: str,
    replicas: int,
    image_default: str,
    progress_deadline_s: int,
) -> dict[str, Any]:
    """The Deployment `<name>-<revision>` running the model server for the spec's revision."""
    online = spec.online
    if online is None:
        raise ValueError("build_deployment needs spec.online")
    labels = selector(owner.name, "online", revision)
    return _deployment(
        owner,
        revision=revision,
        template=_pod_template(spec, labels=labels, image=spec.model.image or image_default),
        replicas=replicas,
        autoscaled=online.autoscaling is not None,
        progress_deadline_s=progress_deadline_s,
    )


def rebuild_deployment(
    stored: dict[str, Any], owner: Owner, *, revision: str, replicas: int, autoscaled: bool, progress_deadline_s: int
) -> dict[str, Any]:
    """The Deployment of a revision the spec no longer describes (stable during a rollout, an old revision kept
    for undo): its pod template is the one stored in the cluster, since the spec that made it is gone."""
    template = stored.get("spec", {}).get("template")
    if not template:
        raise ValueError(f"Deployment {workload_name(owner.name, revision)} has no pod template to keep")
    return _deployment(
        owner,
        revision=revision,
        template=template,
        replicas=replicas,
        autoscaled=autoscaled,
        progress_deadline_s=progress_deadline_s,
    )


GRPC_SERVICE_PORT = {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}


def build_service(owner: Owner, *, role: ServiceRole, revision: str | None, router: bool = False) -> dict[str, Any]:
    """A ClusterIP Service on port 80 selecting the pods of one revision (of every revision when None), or our
    router's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(
            service_name(owner.name, role), {**selector(owner.name, "online"), LABEL_ROLE: role}
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner.name, "router") if router else selector(owner.name, "online", revision),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                # Our router proxies HTTP only, so a Service in front of it has no gRPC port.
                *([] if router else [GRPC_SERVICE_PORT]),
            ],
        },
    }


def build_services(
    owner: Owner, *, stable: str, canary: str, main: str | None, preview: bool = False, router: bool = False
) -> list[dict[str, Any]]:
    """`<name>` is what clients call: our router's pods (`router`), one revision, or (`main` None) every online
    pod of the model, which is how the `service` provider splits traffic by pod counts. `<name>-stable` and
    `<name>-canary` address one revision each; blue-green adds `<name>-preview` on the candidate, for smoke
    tests before the switch.

    Without a rollout in progress the canary (and preview) Service addresses stable, so it always has endpoints.
    """
    services = [
        build_service(owner, role="main", revision=main, router=router),
        build_service(owner, role="stable", revision=stable),
        build_service(owner, role="canary", revision=canary),
    ]
    if preview:
        services.append(build_service(owner, role="preview", revision=canary))
    return services


def build_fallback(spec: ModelDeploymentSpec, owner: Owner, *, image_default: str) -> list[dict[str, Any]]:
    """The Deployment and Service `<name>-fallback` of `online.fallback`'s model, which our router asks when a
    revision fails (modelrollout.traffic.router writes the chains). Not a revision: a change to it rolls its pods
    over in place, with the Deployment's own rolling update (never below its replica count)."""
    fallback = spec.online.fallback if spec.online else None
    if fallback is None:
        return []
    name = fallback_name(owner.name)
    labels = selector(owner.name, "fallback")
    image = fallback.model.image or spec.model.image or image_default
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(name, labels),
        "spec": {
            "replicas": fallback.replicas,
            "selector": {"matchLabels": labels},
            "revisionHistoryLimit": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": _pod_template(spec, labels=labels, image=image, model=fallback.model),
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(name, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                GRPC_SERVICE_PORT,
            ],
        },
    }
    return [deployment, service]


def build_hpa(spec: ModelDeploymentSpec, owner: Owner, *, revision: str, replicas: int) -> dict[str, Any] | None:
    """A CPU HorizontalPodAutoscaler per running revision, when autoscaling is set.

    One per revision (as Flagger does for primary and canary) so a new revision starts at the pods the rollout
    asks for instead of one, and the switch to it never drops capacity: `replicas` (what the rollout wants for
    this revision now) is its floor. A revision at zero gets none.
    """
    scaling = spec.online.autoscaling if spec.online else None
    if scaling is None or replicas == 0:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": owner.metadata(workload_name(owner.name, revision), selector(owner.name, "online", revision)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": workload_name(owner.name, revision),
            },
            "minReplicas": min(max(replicas, 1), scaling.max_replicas),
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def build_pdb(spec: ModelDeploymentSpec, owner: Owner) -> dict[str, Any] | None:
    """Keep all but one online pod through voluntary disruptions (node drains), when there is more than one."""
    online = spec.online
    if online is None:
        return None
    least = online.autoscaling.min_replicas if online.autoscaling else online.replicas
    if least <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": owner.metadata(owner.name, selector(owner.name, "online")),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(owner.name, "online")}},
    }
