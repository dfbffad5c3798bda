"""The `router` provider: our own proxy (`modelserver route`) reads its routing from a ConfigMap we write.

The ConfigMap holds one key, `router.json`, with the routing document of `modelrollout_contract.router` (one model
and one parser for the operator and the router; contract/vectors/router holds what both accept and refuse). A
ModelDeployment with `online.fallback` or `online.graph` needs what only version 2 of the document says (more
backends, fallback chains, ensembles, feature routes: router_v2.with_fallback and with_graph), so it gets version
2, and a router of the previous release refuses it by its schemaVersion rather than misread it; without either,
version 1 as before. Either way the rollout's state is the version 1 routing inside (router_v2.downgrade). Each
change starts from the stored document, so a restarted operator keeps what it set before. The Kubernetes write and
read are injected callables, so this module stays free of any client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelrollout.traffic.base import HeaderMatch, StickyBy, check_weights
from modelrollout_contract.router import (
    CONFIG_KEY,
    Backends,
    RouterConfig,
    RouterConfigError,
    Versions,
    to_document,
)
from modelrollout_contract.router import StickyBy as ContractStickyBy
from modelrollout_contract.router_v2 import (
    BackendV2,
    Ensemble,
    Route,
    downgrade,
    parse_any,
    to_document_v2,
    upgrade,
    with_fallback,
    with_graph,
)

ConfigMapData = dict[str, str]
WriteConfigMap = Callable[[ConfigMapData], Awaitable[None]]
ReadConfigMap = Callable[[], Awaitable[Mapping[str, str] | None]]

__all__ = ["ConfigMapRouter", "FallbackModel", "GraphRouting", "RouterConfig", "RouterConfigError", "Versions",
           "parse_configmap_data", "to_configmap_data"]  # fmt: skip


@dataclass(frozen=True)
class FallbackModel:
    """The model behind a ModelDeployment's `online.fallback`: where its Service is, its version, and how long a
    revision is waited for before it is asked (None: only when the revision fails)."""

    url: str
    version: str
    budget_seconds: float | None = None


@dataclass(frozen=True)
class GraphRouting:
    """A ModelDeployment's serving graph as the router's document says it (router_v2.with_graph): the members'
    backends by name, the ensemble (its members may name `self`), the routes to members."""

    members: Mapping[str, BackendV2]
    ensemble: Ensemble | None = None
    routes: tuple[Route, ...] = ()
    variants: tuple[tuple[str, int], ...] | None = None  # an A/B/n split: (variant, percent), `self` for stable
    sticky_by: ContractStickyBy | None = None  # what keeps a user on one variant


def to_configmap_data(
    config: RouterConfig, fallback: FallbackModel | None = None, graph: GraphRouting | None = None
) -> ConfigMapData:
    if fallback is None and graph is None:
        return {CONFIG_KEY: to_document(config)}
    routing = upgrade(config)
    if fallback is not None:
        backend = BackendV2(url=fallback.url, version=fallback.version)
        routing = with_fallback(routing, backend, budget_seconds=fallback.budget_seconds)
    if graph is not None:
        routing = with_graph(
            routing,
            dict(graph.members),
            ensemble=graph.ensemble,
            routes=list(graph.routes),
            variants=None if graph.variants is None else list(graph.variants),
            sticky_by=graph.sticky_by,
        )
    return {CONFIG_KEY: to_document_v2(routing)}


def parse_configmap_data(data: Mapping[str, str]) -> RouterConfig:
    """The stable/canary routing of a stored document of either version."""
    text = data.get(CONFIG_KEY)
    if text is None:
        raise RouterConfigError(f"the ConfigMap has no {CONFIG_KEY} key")
    return downgrade(parse_any(text))


class ConfigMapRouter:
    """TrafficRouter that writes RouterConfig documents. Each change starts from the stored document (so a
    restarted operator keeps what it set before), changes one thing, and writes the whole document back."""

    def __init__(
        self,
        *,
        route: str,
        stable_url: str,
        canary_url: str,
        versions: Versions,
        write: WriteConfigMap,
        read: ReadConfigMap,
        timeout_seconds: float = 10.0,
        retry_on_stable: bool = False,
        fallback: FallbackModel | None = None,
        graph: GraphRouting | None = None,
    ) -> None:
        self._backends = Backends(stable=stable_url, canary=canary_url)
        # Fixed by the spec and the roles, not by the rollout: rewritten into every document.
        self._fixed: dict[str, Any] = {
            "route": route,
            "backends": self._backends.model_dump(),
            "versions": versions.model_dump(),
            "timeout_seconds": timeout_seconds,
            "retry_on_stable": retry_on_stable,
        }
        self._fallback = fallback
        self._graph = graph
        self._write = write
        self._read = read
        self._written: ConfigMapData | None = None

    def _default(self) -> RouterConfig:
        return RouterConfig.model_validate(self._fixed)

    async def _stored(self) -> tuple[RouterConfig, ConfigMapData] | None:
        """The stored routing and the data it was read from; None when missing or unreadable."""
        data = await self._read()
        if data is None:
            return None
        try:
            return parse_configmap_data(data), dict(data)
        except RouterConfigError:
            return None

    async def _put(self, config: RouterConfig) -> None:
        data = to_configmap_data(config, self._fallback, self._graph)
        await self._write(data)
        self._written = data

    async def _update(self, **changes: Any) -> None:
        # A missing or unreadable document is replaced: a safe default (all to stable) plus the change.
        stored = await self._stored()
        current = stored[0] if stored else self._default()
        merged = {**current.model_dump(), **self._fixed, **changes}
        await self._put(RouterConfig.model_validate(merged))

    async def set_weights(self, stable: int, canary: int) -> None:
        check_weights(stable, canary)
        await self._update(weights={"stable": stable, "canary": canary})

    async def set_mirror(self, percent: int) -> None:
        if not 0 <= percent <= 100:
            raise ValueError(f"mirror percent must be within 0..100, got {percent}")
        await self._update(mirror_percent=percent)

    async def set_header_route(self, match: HeaderMatch | None) -> None:
        await self._update(header_route=match.model_dump() if match else None)

    async def set_sticky(self, by: StickyBy | None) -> None:
        await self._update(sticky_by=_sticky(by))

    async def verify(self) -> bool:
        """The stored document is readable and is the one this router last wrote (or, before any write, merely
        readable). Whether the router process has loaded it is not visible from the ConfigMap."""
        stored = await self._stored()
        if stored is None:
            return False
        return self._written is None or stored[1] == self._written

    async def reset(self) -> None:
        await self._update(weights={"stable": 100, "canary": 0}, mirror_percent=0, header_route=None, sticky_by=None)

    async def converge(self, *, stable: int, canary: int, mirror: int, sticky: StickyBy | None = None) -> bool:
        """Make the stored document say `stable`/`canary`/`mirror` and exactly the sticky assignment `sticky`
        (None: none) with the current roles and settings (a promotion changes the versions, a spec edit the
        timeout or the fallback model), keeping its header route. Writes only when the document differs: True when
        it did (it was missing, edited by hand, or out of date)."""
        check_weights(stable, canary)
        stored = await self._stored()
        routing = {
            "weights": {"stable": stable, "canary": canary},
            "mirror_percent": mirror,
            "sticky_by": _sticky(sticky),
        }
        current = stored[0] if stored else self._default()
        expected = RouterConfig.model_validate({**current.model_dump(), **self._fixed, **routing})
        # Compared as written, not as routing: a fallback model or a graph added, changed or removed (a member's
        # new stable version) changes the document while the stable/canary routing stays the same.
        if stored is not None and stored[1] == to_configmap_data(expected, self._fallback, self._graph):
            return False
        await self._put(expected)
        return True


def _sticky(by: StickyBy | None) -> dict[str, Any] | None:
    return None if by is None else by.model_dump()
