"""What a finished rollout leaves in its namespace: the objects the ModelDeployment owns, and its pods."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from modelrollout.planning.names import LABEL_NAME, LABEL_REVISION

# Kinds the operator writes for an online ModelDeployment with provider router (kube.kinds, modes.online).
_LISTS: dict[str, tuple[str, str]] = {
    "Deployment": ("AppsV1Api", "list_namespaced_deployment"),
    "Service": ("CoreV1Api", "list_namespaced_service"),
    "ConfigMap": ("CoreV1Api", "list_namespaced_config_map"),
    "ServiceAccount": ("CoreV1Api", "list_namespaced_service_account"),
    "Role": ("RbacAuthorizationV1Api", "list_namespaced_role"),
    "RoleBinding": ("RbacAuthorizationV1Api", "list_namespaced_role_binding"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "list_namespaced_horizontal_pod_autoscaler"),
    "PodDisruptionBudget": ("PolicyV1Api", "list_namespaced_pod_disruption_budget"),
}
# Made by Kubernetes itself in every namespace, not by anyone's rollout.
_NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


async def namespace_objects(api: client.ApiClient, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of the kinds above in `namespace`, as plain dicts, by (kind, name); Kubernetes' own defaults
    left out."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, (group, call) in _LISTS.items():
        listed = await getattr(getattr(client, group)(api), call)(namespace)
        for item in api.sanitize_for_serialization(listed)["items"]:
            key = (kind, item["metadata"]["name"])
            if key not in _NAMESPACE_DEFAULTS:
                found[key] = item
    return found


async def pods_by_revision(api: client.ApiClient, namespace: str, name: str) -> dict[str, list[str]]:
    """Names of the pods of ModelDeployment `name`, by revision label ("" for the router's)."""
    pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=LABEL_NAME + "=" + name)
    found: dict[str, list[str]] = {}
    for pod in pods.items:
        found.setdefault((pod.metadata.labels or {}).get(LABEL_REVISION, ""), []).append(pod.metadata.name)
    return found


async def leftovers(
    api: client.ApiClient, namespace: str, name: str, *, uid: str, serving: str, previous: str, preview: bool
) -> list[str]:
    """What should not be there once a rollout of `serving` over `previous` ended and its scale-down ran: an object
    that is not one the operator plans for a ModelDeployment at rest, one it does not own, anything of `previous`
    beyond its Deployment at zero (kept for `undo`, as documented), and pods of `previous`."""
    expected = {
        ("Deployment", f"{name}-{serving}"),
        ("Deployment", f"{name}-{previous}"),
        ("Deployment", f"{name}-router"),
        ("Service", name),
        ("Service", f"{name}-stable"),
        ("Service", f"{name}-canary"),
        ("ConfigMap", f"{name}-router"),
        ("ServiceAccount", f"{name}-router"),
        ("Role", f"{name}-router"),
        ("RoleBinding", f"{name}-router"),
    }
    if preview:
        expected.add(("Service", f"{name}-preview"))
    found = await namespace_objects(api, namespace)
    problems = [f"{kind} {obj} is left over" for kind, obj in sorted(found.keys() - expected)]
    problems += [f"{kind} {obj} is missing" for kind, obj in sorted(expected - found.keys())]
    for (kind, obj), item in sorted(found.items()):
        owners = [o["uid"] for o in item["metadata"].get("ownerReferences") or [] if o.get("controller")]
        if owners != [uid]:
            problems.append(f"{kind} {obj} is not owned by the ModelDeployment (controller owners {owners})")
        selector = (item.get("spec") or {}).get("selector") or {}
        if kind == "Service" and selector.get(LABEL_REVISION) == previous:
            problems.append(f"Service {obj} still selects revision {previous}")
    old = found.get(("Deployment", f"{name}-{previous}"))
    if old is not None and old["spec"].get("replicas") != 0:
        problems.append(f"Deployment {name}-{previous} has {old['spec'].get('replicas')} replicas, not 0")
    pods = await pods_by_revision(api, namespace, name)
    if pods.get(previous):
        problems.append(f"pods of revision {previous} still run: {pods[previous]}")
    unknown = sorted(set(pods) - {serving, previous, ""})
    if unknown:
        problems.append(f"pods of unknown revisions {unknown}: {[pods[r] for r in unknown]}")
    return problems
