"""The immutable routing snapshot a request is served with, and the per-request choice of backend.

A snapshot is built once per accepted document and never changed; the router swaps the whole object, so a
request that started on one snapshot finishes on it (its backends, timeout and retry rule) while the next
request already sees the new one. Everything a request needs is precomputed here: backend URLs after the
`--upstream` overrides, response header bytes, the header matcher, the canary and mirror thresholds.

The split draws from `random.random` (CPython's Mersenne Twister, ~30 ns a draw, no lock, not
cryptographic): a request goes to the canary when its draw is below weights.canary / 100, so the split is
Bernoulli per request, not a deterministic rotation. Tests pass a seeded generator for exact statistics.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from modelserver.routing.config import HeaderRoute, RouterConfig
from modelserver.routing.upstream import Origin

Headers = Sequence[tuple[bytes, bytes]]
STABLE = "stable"
CANARY = "canary"
SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class Backend:
    """One role's upstream: where it is and which model version answers there."""

    role: str
    version: str
    url: str  # base URL without a trailing slash; the request's path and query are appended as they came
    origin: Origin = field(init=False, compare=False)
    response_headers: tuple[tuple[bytes, bytes], ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        tags = ((b"x-modelrollout-version", self.version.encode()), (b"x-modelrollout-role", self.role.encode()))
        object.__setattr__(self, "origin", Origin.parse(self.url))
        object.__setattr__(self, "response_headers", tags)


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
    name: bytes  # lower case, as ASGI servers deliver header names
    exact: bytes | None = None
    pattern: re.Pattern[str] | None = None

    @classmethod
    def of(cls, route: HeaderRoute) -> HeaderMatcher:
        return cls(
            name=route.header.lower().encode("latin-1", "replace"),
            exact=None if route.exact is None else route.exact.encode(),
            pattern=None if route.regex is None else re.compile(route.regex),
        )

    def matches(self, headers: Headers) -> bool:
        """Any occurrence of the header that matches (presence alone when neither exact nor regex is set)."""
        for name, value in headers:
            if name != self.name:
                continue
            if self.exact is not None:
                if value == self.exact:
                    return True
            elif self.pattern is not None:
                if self.pattern.fullmatch(value.decode("latin-1")):
                    return True
            else:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: RouterConfig
    stable: Backend
    canary: Backend | None
    canary_share: float  # a draw below this goes to the canary
    mirror_share: float  # a second draw below this copies a stable request to the canary
    header: HeaderMatcher | None
    timeout_s: float
    retry_on_stable: bool

    @property
    def route(self) -> str:
        return self.config.route

    def choose(self, headers: Headers, draw: float) -> Backend:
        """The backend for a request with these headers and this uniform draw in [0, 1)."""
        canary = self.canary
        if canary is None:
            return self.stable
        if self.header is not None and self.header.matches(headers):
            return canary
        return canary if draw < self.canary_share else self.stable

    def mirrors(self, draw: float) -> bool:
        """Whether a request answered by stable is also sent to the canary as a shadow call."""
        return self.canary is not None and draw < self.mirror_share


def build_snapshot(config: RouterConfig, upstreams: Mapping[str, str] | None = None) -> Snapshot:
    """The snapshot of `config`; `upstreams` (model version -> base URL) replaces the document's backend URL of
    whichever role serves that version (cluster DNS names do not resolve on a developer's machine)."""
    overrides = upstreams or {}
    stable_url = overrides.get(config.versions.stable, config.backends.stable)
    stable = Backend(STABLE, config.versions.stable, _base(stable_url))
    canary = None
    if config.backends.canary is not None and config.versions.canary is not None:
        url = overrides.get(config.versions.canary, config.backends.canary)
        canary = Backend(CANARY, config.versions.canary, _base(url))
    return Snapshot(
        config=config,
        stable=stable,
        canary=canary,
        canary_share=config.weights.canary / 100,
        mirror_share=config.mirror_percent / 100,
        header=None if config.header_route is None else HeaderMatcher.of(config.header_route),
        timeout_s=config.timeout_seconds,
        retry_on_stable=config.retry_on_stable,
    )


def _base(url: str) -> str:
    return url.rstrip("/")


def uniform(seed: int | None = None) -> Callable[[], float]:
    """The split's draw: a bound `random.Random(seed).random`, uniform in [0, 1)."""
    return random.Random(seed).random
