"""The TrafficRouter for a ModelDeployment's provider, wired to the API server (the routers themselves, in
`modelrollout.traffic`, take their reads and writes as callables and hold no client)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from modelrollout.api.base import duration_seconds
from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.kube.client import KubeClient
from modelrollout.planning.names import router_configmap_name, selector, service_name
from modelrollout.planning.online import SERVICE_PORT, Owner
from modelrollout.planning.router import uses_router
from modelrollout.traffic.base import TrafficRouter
from modelrollout.traffic.router import ConfigMapRouter, Versions


class ConvergingRouter(TrafficRouter, Protocol):
    async def converge(self, *, stable: int, canary: int, mirror: int) -> bool:
        """Make the routing in place say this (with the current roles); True when something had to change."""
        ...


@dataclass(frozen=True)
class RouterContext:
    md: ModelDeployment
    status: ModelDeploymentStatus  # as decided in this pass: its roles are the ones to route to
    kube: KubeClient


def router_for(ctx: RouterContext) -> ConvergingRouter | None:
    """The provider's router; None for provider `service`, whose routing is the Services themselves, and for
    strategy direct without a provider, which never splits traffic."""
    if uses_router(ctx.md.spec):
        return _configmap_router(ctx)
    return None


def _configmap_router(ctx: RouterContext) -> ConfigMapRouter:
    meta, spec, status = ctx.md.metadata, ctx.md.spec, ctx.status
    name, namespace, uid = meta.name or "", meta.namespace or "", meta.uid or ""
    owner = Owner(name=name, namespace=namespace, uid=uid)
    configmap = router_configmap_name(name)
    serving = status.stable or status.canary
    # Without a rollout the canary Service selects stable's pods, so the canary role serves stable's version.
    canary = status.canary if status.stable is not None and status.canary is not None else serving
    routing = spec.rollout.traffic_routing
    settings = routing.router if routing else None

    async def write(data: dict[str, str]) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": owner.metadata(configmap, selector(name, "online")),
            "data": data,
        }
        await ctx.kube.apply(body)

    async def read() -> Mapping[str, str] | None:
        found = await ctx.kube.get("ConfigMap", namespace, configmap)
        return None if found is None else dict(found.get("data") or {})

    def url(role: str) -> str:
        return f"http://{service_name(name, role)}.{namespace}.svc:{SERVICE_PORT}"  # type: ignore[arg-type]

    return ConfigMapRouter(
        route=name,
        stable_url=url("stable"),
        canary_url=url("canary"),
        versions=Versions(
            stable=serving.version if serving else spec.model.version, canary=canary.version if canary else None
        ),
        write=write,
        read=read,
        timeout_seconds=duration_seconds(settings.timeout) if settings else 10.0,
        retry_on_stable=settings.retry_on_stable if settings else False,
    )
