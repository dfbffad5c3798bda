"""Names and labels of the objects a ModelDeployment owns (the contract with users' selectors and dashboards)."""

from __future__ import annotations

from typing import Literal

from modelrollout.api.resource import GROUP

LABEL_NAME = f"{GROUP}/name"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_MODE = f"{GROUP}/mode"
LABEL_ROLE = f"{GROUP}/role"
ANNOTATION_REPLICAS = f"{GROUP}/replicas"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelrollout", "app.kubernetes.io/part-of": "modelrollout"}

Mode = Literal["online", "batch", "stream", "router", "fallback"]
ServiceRole = Literal["main", "stable", "canary", "preview"]


def workload_name(name: str, revision: str) -> str:
    """`<name>-<revision>`: one Deployment per revision, so two revisions can run side by side."""
    return f"{name}-{revision}"


def service_name(name: str, role: ServiceRole) -> str:
    """`<name>` is what clients call; `<name>-stable` and `<name>-canary` address one revision each."""
    return name if role == "main" else f"{name}-{role}"


def router_name(name: str) -> str:
    """`<name>-router`: the router's Deployment, ServiceAccount, Role and RoleBinding (provider `router`)."""
    return f"{name}-router"


def fallback_name(name: str) -> str:
    """`<name>-fallback`: the Deployment and Service of `online.fallback`'s model (a revision name is a hex hash, so
    it never collides)."""
    return f"{name}-fallback"


def router_configmap_name(name: str) -> str:
    """`<name>-router`: the routing document our router reads (provider `router`)."""
    return f"{name}-router"


def selector(name: str, mode: Mode, revision: str | None = None) -> dict[str, str]:
    labels = {LABEL_NAME: name, LABEL_MODE: mode}
    if revision is not None:
        labels[LABEL_REVISION] = revision
    return labels
