"""The immutable routing snapshot a request is served with, and the per-request choice of backend.

A snapshot is built once per accepted document and never changed; the router swaps the whole object, so a
request that started on one snapshot finishes on it (its backends, timeout and retry rule) while the next
request already sees the new one. Everything a request needs is precomputed here: backend URLs after the
`--upstream` overrides, response header bytes, the header matcher, the canary and mirror thresholds.

The split draws from `random.random` (CPython's Mersenne Twister, ~30 ns a draw, no lock, not
cryptographic): a request goes to the canary when its draw is below weights.canary / 100, so the split is
Bernoulli per request, not a deterministic rotation. Tests pass a seeded generator for exact statistics.

With `stickyBy` the canary's weight is a share of users instead: a request's key (the value of that header or
cookie) falls in bucket `zlib.crc32(key) % 10000` (modelrollout_contract.sticky), and the request goes to the canary
when the bucket is below weights.canary * 100. CRC-32 rather than `hash()` (salted per process): every router
process and replica, and every restart, assigns a key alike, and raising the weight only moves users from stable to
the canary. A header route still wins. A request without a key goes to stable in header mode (the control group); in
cookie mode it gets a new random id, is assigned by it, and the answer sets the cookie so the user's next requests
stick.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from modelrollout_contract.router import HeaderRoute, RouterConfig, StickyBy
from modelrollout_contract.sticky import BUCKETS, bucket
from modelserver.routing.upstream import Origin

Headers = Sequence[tuple[bytes, bytes]]
STABLE = "stable"
CANARY = "canary"
SHADOW = "shadow"
# How a sticky request was assigned (the `source` label of modelrouter_assignments_total).
KEY = "key"  # by the key it carried
NEW = "new"  # by a cookie id made for it (its answer sets the cookie)
MISSING = "missing"  # no key, header mode: stable
COOKIE_MAX_AGE_S = 30 * 24 * 3600
_COOKIE_ATTRIBUTES = f"; Path=/; Max-Age={COOKIE_MAX_AGE_S}; SameSite=Lax; HttpOnly".encode()
_COOKIE = b"cookie"
_QUOTE = 0x22


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


def new_user_id() -> str:
    """A new cookie-mode key: 32 random hex digits."""
    return uuid.uuid4().hex


def cookie_value(header: bytes, name: bytes) -> bytes | None:
    """The value of cookie `name` in a Cookie header (`a=1; b=2`), unquoted; None when absent or empty. Never
    raises: whatever does not parse as `name=value` is skipped, so a malformed header means no cookie."""
    if name not in header:  # the common miss costs one substring search
        return None
    for part in header.split(b";"):
        key, equals, value = part.partition(b"=")
        if equals and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == _QUOTE and value[-1] == _QUOTE:
                value = value[1:-1]
            if value:
                return value
    return None


@dataclass(frozen=True, slots=True)
class Sticky:
    """Where a request's key is (one header, or one cookie) and the canary's share of the buckets."""

    header: bytes | None  # lower case, as ASGI servers deliver header names
    cookie: bytes | None
    threshold: int  # keys in a bucket below this go to the canary: weights.canary * 100

    @classmethod
    def of(cls, by: StickyBy, canary_weight: int) -> Sticky:
        return cls(
            header=None if by.header is None else by.header.lower().encode("latin-1", "replace"),
            cookie=None if by.cookie is None else by.cookie.encode(),
            threshold=canary_weight * (BUCKETS // 100),
        )

    def key(self, headers: Headers) -> bytes | None:
        """The request's key: the first non-empty value of the header, or of the cookie; None when it has none."""
        if self.header is not None:
            for name, value in headers:
                if name == self.header:
                    key = value.strip(b" \t")
                    if key:
                        return key
            return None
        cookie = self.cookie
        assert cookie is not None  # StickyBy sets exactly one
        for name, value in headers:
            if name == _COOKIE:
                found = cookie_value(value, cookie)
                if found is not None:
                    return found
        return None

    def in_canary(self, key: bytes) -> bool:
        return bucket(key) < self.threshold

    def set_cookie(self, key: str) -> bytes:
        """The Set-Cookie header value that makes the user's next requests carry `key`."""
        assert self.cookie is not None
        return self.cookie + b"=" + key.encode() + _COOKIE_ATTRIBUTES


@dataclass(slots=True)
class Assignment:
    """A sticky request's backend, how it was chosen (KEY, NEW, MISSING; None when the header route decided, which
    is no assignment), and the Set-Cookie value its answer must carry (NEW only)."""

    backend: Backend
    source: str | None
    set_cookie: bytes | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: RouterConfig
    stable: Backend
    canary: Backend | None
    canary_share: float  # a draw below this goes to the canary
    mirror_share: float  # a second draw below this copies a stable request to the canary
    header: HeaderMatcher | None
    sticky: Sticky | None  # set: requests are assigned with assign(), not split with choose()
    timeout_s: float
    retry_on_stable: bool

    @property
    def route(self) -> str:
        return self.config.route

    def choose(self, headers: Headers, draw: float) -> Backend:
        """The backend for a request with these headers and this uniform draw in [0, 1), splitting requests
        (when `sticky` is None; otherwise the router calls assign)."""
        canary = self.canary
        if canary is None:
            return self.stable
        if self.header is not None and self.header.matches(headers):
            return canary
        return canary if draw < self.canary_share else self.stable

    def assign(self, sticky: Sticky, headers: Headers, new_id: Callable[[], str] = new_user_id) -> Assignment:
        """The backend for a request by its user's key (`sticky` is this snapshot's): the header route first,
        then the key's bucket; a request without a key goes to stable (header mode) or gets a new id (cookie)."""
        canary = self.canary
        if canary is not None and self.header is not None and self.header.matches(headers):
            return Assignment(canary, None)
        key = sticky.key(headers)
        if key is not None:
            return Assignment(canary if canary is not None and sticky.in_canary(key) else self.stable, KEY)
        if sticky.cookie is None:
            return Assignment(self.stable, MISSING)
        made = new_id()
        backend = canary if canary is not None and sticky.in_canary(made.encode()) else self.stable
        return Assignment(backend, NEW, sticky.set_cookie(made))

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
        sticky=None if config.sticky_by is None else Sticky.of(config.sticky_by, config.weights.canary),
        timeout_s=config.timeout_seconds,
        retry_on_stable=config.retry_on_stable,
    )


def _base(url: str) -> str:
    return url.rstrip("/")


def uniform(seed: int | None = None) -> Callable[[], float]:
    """The split's draw: a bound `random.Random(seed).random`, uniform in [0, 1)."""
    return random.Random(seed).random
