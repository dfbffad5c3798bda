"""The `router` provider: our own proxy (`modelserver route`) reads its routing from a ConfigMap we write.

The ConfigMap holds one key, `router.json`, with the routing document of `modelrollout_contract.router` (one model
and one parser for the operator and the router; contract/vectors/router holds what both accept and refuse). Each
change starts from the stored document, so a restarted operator keeps what it set before. The Kubernetes write
and read are injected callables, so this module stays free of any client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from modelrollout.traffic.base import HeaderMatch, StickyBy, check_weights
from modelrollout_contract.router import (
    CONFIG_KEY,
    Backends,
    RouterConfig,
    RouterConfigError,
    Versions,
    parse_document,
    to_document,
)

ConfigMapData = dict[str, str]
WriteConfigMap = Callable[[ConfigMapData], Awaitable[None]]
ReadConfigMap = Callable[[], Awaitable[Mapping[str, str] | None]]

__all__ = ["ConfigMapRouter", "RouterConfig", "RouterConfigError", "Versions", "parse_configmap_data",
           "to_configmap_data"]  # fmt: skip


def to_configmap_data(config: RouterConfig) -> ConfigMapData:
    return {CONFIG_KEY: to_document(config)}


def parse_configmap_data(data: Mapping[str, str]) -> RouterConfig:
    text = data.get(CONFIG_KEY)
    if text is None:
        raise RouterConfigError(f"the ConfigMap has no {CONFIG_KEY} key")
    return parse_document(text)


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
        self._write = write
        self._read = read
        self._written: RouterConfig | None = None

    def _default(self) -> RouterConfig:
        return RouterConfig.model_validate(self._fixed)

    async def _stored(self) -> RouterConfig | None:
        data = await self._read()
        if data is None:
            return None
        try:
            return parse_configmap_data(data)
        except RouterConfigError:
            return None

    async def _update(self, **changes: Any) -> None:
        # A missing or unreadable document is replaced: a safe default (all to stable) plus the change.
        current = await self._stored() or self._default()
        merged = {**current.model_dump(), **self._fixed, **changes}
        config = RouterConfig.model_validate(merged)
        await self._write(to_configmap_data(config))
        self._written = config

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
        return self._written is None or stored == self._written

    async def reset(self) -> None:
        await self._update(weights={"stable": 100, "canary": 0}, mirror_percent=0, header_route=None, sticky_by=None)

    async def converge(self, *, stable: int, canary: int, mirror: int, sticky: StickyBy | None = None) -> bool:
        """Make the stored document say `stable`/`canary`/`mirror` and exactly the sticky assignment `sticky`
        (None: none) with the current roles and settings (a promotion changes the versions, a spec edit the
        timeout), keeping its header route. Writes only when the document differs: True when it did (it was
        missing, edited by hand, or out of date)."""
        check_weights(stable, canary)
        stored = await self._stored()
        routing = {
            "weights": {"stable": stable, "canary": canary},
            "mirror_percent": mirror,
            "sticky_by": _sticky(sticky),
        }
        expected = RouterConfig.model_validate({**(stored or self._default()).model_dump(), **self._fixed, **routing})
        if stored == expected:
            return False
        await self._write(to_configmap_data(expected))
        self._written = expected
        return True


def _sticky(by: StickyBy | None) -> dict[str, Any] | None:
    return None if by is None else by.model_dump()
