"""The `router` provider: our own proxy (`modelserver route`) reads its routing from a ConfigMap we write.

The ConfigMap holds one key, `router.json`, with a versioned document:

    {"schemaVersion": 1, "route": "churn",
     "backends": {"stable": "http://churn-stable.ns.svc:80", "canary": "http://churn-canary.ns.svc:80"},
     "versions": {"stable": "1", "canary": "2"},
     "weights": {"stable": 90, "canary": 10}, "mirrorPercent": 0,
     "headerRoute": {"header": "x-canary", "exact": "yes"},
     "stickyBy": {"header": "x-user-id"},
     "timeoutSeconds": 10, "retryOnStable": false}

`route` is the label value the router puts on its metrics (modelrouter_*{route=...}), which the shadow builtins
select on; `versions` are the model versions behind each role (the metrics' `version` label). A router must
refuse a schemaVersion it does not know rather than guess. tests/fixtures/router/config-v1.json is the shared
test vector: the operator's and the router's parsers must both accept it. The Kubernetes write and read are
injected callables, so this module stays free of any client.

`stickyBy` (optional: `{"header": name}` or `{"cookie": name}`, exactly one) makes the canary's weight a share
of users rather than of requests: the router sends each request to the variant the value of that header or
cookie is assigned to (a header route still wins), so one user always sees one variant.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from modelrollout.traffic.base import HeaderMatch, StickyBy, check_weights

SCHEMA_VERSION: Literal[1] = 1
CONFIG_KEY = "router.json"

ConfigMapData = dict[str, str]
WriteConfigMap = Callable[[ConfigMapData], Awaitable[None]]
ReadConfigMap = Callable[[], Awaitable[Mapping[str, str] | None]]


class RouterConfigError(ValueError):
    """A stored router document we cannot use, with the reason."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Backends(_Model):
    stable: str = Field(pattern=r"^https?://", description="Base URL of the stable Service.")
    canary: str | None = Field(default=None, pattern=r"^https?://", description="Base URL of the canary Service.")


class Versions(_Model):
    stable: str = Field(min_length=1, max_length=63, description="Model version the stable role serves.")
    canary: str | None = Field(default=None, min_length=1, max_length=63, description="The canary's.")


class RouterWeights(_Model):
    stable: int = Field(default=100, ge=0, le=100)
    canary: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def _add_up(self) -> RouterWeights:
        check_weights(self.stable, self.canary)
        return self


class RouterConfig(_Model):
    """Version 1 of the router's routing document."""

    schema_version: Literal[1] = SCHEMA_VERSION
    route: str = Field(min_length=1, max_length=253)
    backends: Backends
    versions: Versions
    weights: RouterWeights = RouterWeights()
    mirror_percent: int = Field(default=0, ge=0, le=100)
    header_route: HeaderMatch | None = None
    sticky_by: StickyBy | None = Field(default=None, description="Split users by this header or cookie value.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=3600, description="Per upstream call.")
    retry_on_stable: bool = Field(default=False, description="Answer from stable when the canary fails.")

    @model_validator(mode="after")
    def _canary_when_used(self) -> RouterConfig:
        uses_canary = self.weights.canary > 0 or self.mirror_percent > 0 or self.header_route is not None
        if uses_canary and self.backends.canary is None:
            raise ValueError("weights, mirror or a header route send traffic to the canary but it has no backend")
        if (self.backends.canary is None) != (self.versions.canary is None):
            # The router labels every answer with the version behind its role: a backend needs its version.
            raise ValueError("backends.canary and versions.canary are set together or not at all")
        return self


def to_configmap_data(config: RouterConfig) -> ConfigMapData:
    # Sorted keys: the same routing always gives the same bytes, so re-applying it is a no-op for the API server.
    body = config.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {CONFIG_KEY: json.dumps(body, sort_keys=True, separators=(",", ":"))}


def parse_configmap_data(data: Mapping[str, str]) -> RouterConfig:
    text = data.get(CONFIG_KEY)
    if text is None:
        raise RouterConfigError(f"the ConfigMap has no {CONFIG_KEY} key")
    try:
        body: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RouterConfigError(f"{CONFIG_KEY} is not JSON: {exc}") from exc
    version = body.get("schemaVersion") if isinstance(body, dict) else None
    if version != SCHEMA_VERSION:
        raise RouterConfigError(f"{CONFIG_KEY} has schemaVersion {version!r}; this operator reads {SCHEMA_VERSION}")
    try:
        return RouterConfig.model_validate(body)
    except ValidationError as exc:
        raise RouterConfigError(f"{CONFIG_KEY} is invalid: {exc}") from exc


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
