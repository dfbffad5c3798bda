"""The TrafficRouter for a ModelDeployment's provider, wired to the API server (the routers themselves, in
`modelrollout.traffic`, take their reads and writes as callables and hold no client)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.api.base import duration_seconds
from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.kube.client import KubeClient
from modelrollout.planning.graph import graph_routing
from modelrollout.planning.names import fallback_name, router_configmap_name, selector, service_name
from modelrollout.planning.online import SERVICE_PORT, Owner
from modelrollout.traffic.base import StickyBy, TrafficRouter
from modelrollout.traffic.gateway_api import GatewayAPIRouter, GatewayTarget, MirrorSupport
from modelrollout.traffic.istio import DestinationRuleAccess, IstioRouter, IstioTarget
from modelrollout.traffic.patching import Conflict, ReadObject, UnsupportedField, WritePatch
from modelrollout.traffic.router import ConfigMapRouter, FallbackModel, Versions


class ConvergingRouter(TrafficRouter, Protocol):
    async def converge(self, *, stable: int, canary: int, mirror: int, sticky: StickyBy | None = None) -> bool:
        """Make the routing in place say this (with the current roles), keeping its header route; True when
        something had to change. `sticky` is the assignment the rollout wants (an A/B test's), None for none."""
        ...


@dataclass(frozen=True)
class RouterContext:
    md: ModelDeployment
    status: ModelDeploymentStatus  # as decided in this pass: its roles are the ones to route to
    kube: KubeClient


def router_for(ctx: RouterContext) -> ConvergingRouter | None:
    """The provider's router; None for provider `service`, whose routing is the Services themselves, and for
    strategy direct without a provider, which never splits traffic."""
    chosen = ctx.md.spec.rollout.provider
    if chosen == "router":
        return _configmap_router(ctx)
    if chosen == "gatewayAPI":
        return _gateway_api_router(ctx)
    if chosen == "istio":
        return _istio_router(ctx)
    return None


# Learnt once per process from the API server (strict field validation), shared by every HTTPRoute router.
_MIRROR_SUPPORT = MirrorSupport()


def _object_access(ctx: RouterContext, kind: str, name: str, *, strict: bool = False) -> tuple[ReadObject, WritePatch]:
    """Read and conditional write (merge patch under the resourceVersion read) of a user's object."""
    namespace = ctx.md.metadata.namespace or ""

    async def read() -> dict[str, Any] | None:
        return await ctx.kube.get(kind, namespace, name)

    async def write(changes: dict[str, Any], resource_version: str) -> dict[str, Any]:
        patch = {**changes, "metadata": {**changes.get("metadata", {}), "resourceVersion": resource_version}}
        try:
            return await ctx.kube.merge_patch(kind, namespace, name, patch, strict=strict)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"{kind} {namespace}/{name} changed since it was read") from exc
            body = str(exc.body or "")
            if exc.status in (400, 422) and "percent" in body and ("unknown field" in body or "not declared" in body):
                raise UnsupportedField("percent", body) from exc
            raise

    return read, write


def _gateway_api_router(ctx: RouterContext) -> GatewayAPIRouter:
    routing = ctx.md.spec.rollout.traffic_routing
    ref = routing.gateway_api if routing else None
    if ref is None:  # the spec's validation rules make this impossible
        raise ValueError("trafficRouting.provider is gatewayAPI but trafficRouting.gatewayAPI is not set")
    name = ctx.md.metadata.name or ""
    read, write = _object_access(ctx, "HTTPRoute", ref.http_route, strict=True)
    return GatewayAPIRouter(
        target=GatewayTarget(
            name=name,
            stable_service=service_name(name, "stable"),
            canary_service=service_name(name, "canary"),
            port=SERVICE_PORT,
            rule_name=ref.rule_name,
        ),
        read=read,
        write=write,
        mirror_support=_MIRROR_SUPPORT,
        what=f"HTTPRoute {ctx.md.metadata.namespace}/{ref.http_route}",
    )


def _istio_router(ctx: RouterContext) -> IstioRouter:
    routing = ctx.md.spec.rollout.traffic_routing
    ref = routing.istio if routing else None
    if ref is None:  # the spec's validation rules make this impossible
        raise ValueError("trafficRouting.provider is istio but trafficRouting.istio is not set")
    name, namespace = ctx.md.metadata.name or "", ctx.md.metadata.namespace or ""
    rule = None
    if ref.destination_rule:
        stable = ctx.status.stable or ctx.status.canary
        # Without a rollout the canary subset selects stable's pods, as the canary Service does; before any
        # revision is known both select the model's online pods (there is at most one revision then).
        canary = ctx.status.canary or stable
        rule_read, rule_write = _object_access(ctx, "DestinationRule", ref.destination_rule)
        rule = DestinationRuleAccess(
            read=rule_read,
            write=rule_write,
            labels={
                "stable": selector(name, "online", stable.revision if stable else None),
                "canary": selector(name, "online", canary.revision if canary else None),
            },
            what=f"DestinationRule {namespace}/{ref.destination_rule}",
        )
    read, write = _object_access(ctx, "VirtualService", ref.virtual_service)
    return IstioRouter(
        target=IstioTarget(
            name=name,
            namespace=namespace,
            stable_service=service_name(name, "stable"),
            canary_service=service_name(name, "canary"),
            port=SERVICE_PORT,
            routes=tuple(ref.routes) if ref.routes is not None else None,
        ),
        read=read,
        write=write,
        destination_rule=rule,
        what=f"VirtualService {namespace}/{ref.virtual_service}",
    )


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

    fallback = spec.online.fallback if spec.online else None
    fallback_model = None
    if fallback is not None:
        budget = fallback.latency_budget
        fallback_model = FallbackModel(
            url=f"http://{fallback_name(name)}.{namespace}.svc:{SERVICE_PORT}",
            version=fallback.model.version,
            budget_seconds=None if budget is None else duration_seconds(budget),
        )

    graph = spec.online.graph if spec.online else None
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
        fallback=fallback_model,
        graph=None if graph is None else graph_routing(graph, namespace, status.graph),
    )
