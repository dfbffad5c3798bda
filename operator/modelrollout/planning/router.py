"""Our router in the cluster (provider `router`): a Deployment running `modelserver route` that reads the
ConfigMap `<name>-router` the operator writes, with a ServiceAccount allowed to read ConfigMaps of its
namespace and nothing else. The `<name>` Service then selects the router's pods, so clients calling `<name>`
get the exact weights, mirroring and header routes of the rollout."""

from __future__ import annotations

from typing import Any

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.planning.names import MANAGED_BY, router_configmap_name, router_name, selector
from modelrollout.planning.online import HTTP_PORT, LOCKED_DOWN_CONTAINER, RUN_AS_USER, SCRAPED, Owner
from modelrollout.planning.placement import place

ROUTER_CONTAINER = "router"
# Where the router pod sees its API keys file (trafficRouting.router.apiKeys), a Secret volume: the kubelet updates
# it in place when the Secret changes, and the router re-reads it.
API_KEYS_DIR = "/etc/modelrollout/api-keys"
API_KEYS_FILE = "api-keys.json"


def _router_pod(spec: ModelDeploymentSpec, owner: Owner, *, image: str) -> dict[str, Any]:
    labels = selector(owner.name, "router")
    probe = {"periodSeconds": 2, "failureThreshold": 3, "timeoutSeconds": 2}
    container: dict[str, Any] = {
        "name": ROUTER_CONTAINER,
        "image": image,
        "args": [
            "route",
            "--configmap",
            f"{owner.namespace}/{router_configmap_name(owner.name)}",
            "--host",
            "0.0.0.0",  # a pod listens on its own network namespace
            "--port",
            str(HTTP_PORT),
        ],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # Ready only once a routing document is loaded: a router without routes must not get traffic.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, **probe},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, **probe, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": LOCKED_DOWN_CONTAINER,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    routing = spec.rollout.traffic_routing
    keys = routing.router.api_keys if routing is not None and routing.router is not None else None
    if keys is not None:
        container["args"] += ["--api-keys-file", f"{API_KEYS_DIR}/{API_KEYS_FILE}"]
        container["volumeMounts"].append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
        items = [{"key": keys.key, "path": API_KEYS_FILE}]
        volumes.append({"name": "api-keys", "secret": {"secretName": keys.name, "items": items}})
    template = {
        "metadata": {
            "labels": {**MANAGED_BY, **labels},
            "annotations": dict(SCRAPED),
        },
        "spec": {
            "serviceAccountName": router_name(owner.name),
            "containers": [container],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": volumes,
        },
    }
    return place(template, spec.pod, model_pods=False)


def build_router(spec: ModelDeploymentSpec, owner: Owner, *, image_default: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding and Deployment of the router (two pods once the model runs more than
    one: the router is in every request's path, so it must not be a single point of failure)."""
    name = router_name(owner.name)
    labels = selector(owner.name, "router")
    online_pods = spec.online.replicas if spec.online and spec.online.autoscaling is None else 2
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": owner.metadata(name, labels)}
    # Namespace-wide read of ConfigMaps: RBAC cannot narrow list/watch to one name for every API server version
    # we support, and the router must list+watch its document.
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": owner.metadata(name, labels),
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": owner.metadata(name, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(name, labels),
        "spec": {
            "replicas": 2 if online_pods > 1 else 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": _router_pod(spec, owner, image=spec.model.image or image_default),
        },
    }
    return [account, role, binding, deployment]
