"""The immutable routing snapshot a request is served with, and the per-request choice of backend.

A snapshot is built once per accepted document (version 1 documents as the version 2 routing they mean,
modelrollout_contract.router_v2) and never changed; the router swaps the whole object, so a request that started on
one snapshot finishes on it (its backends, timeout and fallbacks) while the next request already sees the new one.
Everything a request needs is precomputed here: backend URLs after the `--upstream` overrides, response header
bytes, the route matchers (a header, or a feature's value in the body: routing.features), the split's cumulative
thresholds, the mirror and the fallback chains.

The split draws from `random.random` (CPython's Mersenne Twister, ~30 ns a draw, no lock, not cryptographic): a
request goes to the first entry of the split whose cumulative share is above its draw, so the split is categorical
per request, not a deterministic rotation. Tests pass a seeded generator for exact statistics.

With `stickyBy` the weights are shares of users instead: a request's key (the value of that header or cookie) falls
in bucket `zlib.crc32(key) % 10000` (modelrollout_contract.sticky), and the request goes to the entry whose
cumulative range of buckets (weight x 100 each, in the split's order) holds it. CRC-32 rather than `hash()` (salted
per process): every router process and replica, and every restart, assigns a key alike, and raising the first
entry's weight only moves users into it (a version 1 document's canary is first). A header route still wins. A
request without a key goes to the control in header mode (the control group); in cookie mode it gets a new random
id, is assigned by it, and the answer sets the cookie so the user's next requests stick.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from modelrollout_contract.router import HeaderRoute, StickyBy
from modelrollout_contract.router_v2 import SHADOW_ROLE, Combine, Ensemble, Route, RouterConfigV2
from modelrollout_contract.sticky import BUCKETS, bucket
from modelserver.routing.features import FeatureMatcher, RequestBody
from modelserver.routing.upstream import Origin

Headers = Sequence[tuple[bytes, bytes]]
SHADOW = SHADOW_ROLE  # the role a mirrored call is counted under
# How a sticky request was assigned (the `source` label of modelrouter_assignments_total).
KEY = "key"  # by the key it carried
NEW = "new"  # by a cookie id made for it (its answer sets the cookie)
MISSING = "missing"  # no key, header mode: the control
COOKIE_MAX_AGE_S = 30 * 24 * 3600
_COOKIE_ATTRIBUTES = f"; Path=/; Max-Age={COOKIE_MAX_AGE_S}; SameSite=Lax; HttpOnly".encode()
_COOKIE = b"cookie"
_QUOTE = 0x22


def answer_tags(role: str, version: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers naming who answered, on every answer of a backend or an ensemble."""
    return ((b"x-modelrollout-version", version.encode()), (b"x-modelrollout-role", role.encode()))


@dataclass(frozen=True, slots=True)
class Backend:
    """One role's upstream: where it is and which model version answers there."""

    role: str
    version: str
    url: str  # base URL without a trailing slash; the request's path and query are appended as they came
    origin: Origin = field(init=False, compare=False)
    response_headers: tuple[tuple[bytes, bytes], ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", Origin.parse(self.url, self.version))
        object.__setattr__(self, "response_headers", answer_tags(self.role, self.version))


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
class EnsembleBackend:
    """An ensemble: asked like a backend, answered by its members at once (routing.ensemble)."""

    role: str
    version: str
    members: tuple[Backend, ...]
    weights: tuple[float, ...]  # one per member, in order
    combine: Combine
    quorum: int
    member_timeout_s: float | None  # None: the document's timeoutSeconds
    response_headers: tuple[tuple[bytes, bytes], ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "response_headers", answer_tags(self.role, self.version))

    @classmethod
    def of(cls, name: str, spec: Ensemble, backends: Mapping[str, Backend]) -> EnsembleBackend:
        members = tuple(backends[member] for member in spec.members)
        weights = spec.weights or {}
        return cls(
            role=name,
            version=spec.version or "+".join(member.version for member in members),
            members=members,
            weights=tuple(weights.get(member, 1.0) for member in spec.members),
            combine=spec.combine,
            quorum=spec.needed,
            member_timeout_s=spec.member_timeout_seconds,
        )


# What a request is sent to: one backend, or an ensemble of them.
Target = Backend | EnsembleBackend


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
    """Where a request's key is: one header, or one cookie."""

    header: bytes | None  # lower case, as ASGI servers deliver header names
    cookie: bytes | None

    @classmethod
    def of(cls, by: StickyBy) -> Sticky:
        return cls(
            header=None if by.header is None else by.header.lower().encode("latin-1", "replace"),
            cookie=None if by.cookie is None else by.cookie.encode(),
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

    def set_cookie(self, key: str) -> bytes:
        """The Set-Cookie header value that makes the user's next requests carry `key`."""
        assert self.cookie is not None
        return self.cookie + b"=" + key.encode() + _COOKIE_ATTRIBUTES


@dataclass(slots=True)
class Assignment:
    """A sticky request's backend, how it was chosen (KEY, NEW, MISSING; None when a header route decided, which
    is no assignment), and the Set-Cookie value its answer must carry (NEW only)."""

    backend: Target
    source: str | None
    set_cookie: bytes | None = None


@dataclass(frozen=True, slots=True)
class Chain:
    """Who answers, in order, when a backend (or an ensemble) fails a request; `budget_s`: how long a backend that
    has a next one is waited for (None: the whole timeout)."""

    then: tuple[Target, ...]
    budget_s: float | None


@dataclass(frozen=True, slots=True)
class MirrorRule:
    source: Backend
    target: Backend
    share: float  # a draw below this copies a request `source` answered to `target`


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: RouterConfigV2
    backends: Mapping[str, Backend]
    targets: Mapping[str, Target]  # the backends and the ensembles, by name
    control: Target
    split: tuple[tuple[float, Target], ...]  # (cumulative share, target), weights above 0 only, the last at 1.0
    buckets: tuple[tuple[int, Target], ...]  # (cumulative bucket bound, target): the same ranges for stickyBy
    routes: tuple[tuple[HeaderMatcher | FeatureMatcher, Target], ...]
    sticky: Sticky | None  # set: requests are assigned with assign(), not split with choose()
    mirror: MirrorRule | None
    fallbacks: Mapping[str, Chain]  # by the name of the backend that failed
    timeout_s: float
    route_tag: bytes  # the route's name as the via header carries it (messages.forwardable), encoded once

    @property
    def route(self) -> str:
        return self.config.route

    def routed(self, headers: Headers, body: bytes) -> Target | None:
        """The backend of the first route (by header, or by a feature's value in the body) the request matches."""
        parsed = None
        for matcher, backend in self.routes:
            if isinstance(matcher, HeaderMatcher):
                if matcher.matches(headers):
                    return backend
            else:
                parsed = parsed or RequestBody(body, headers)
                if matcher.matches(parsed):
                    return backend
        return None

    def choose(self, headers: Headers, draw: float, body: bytes = b"") -> Target:
        """The backend for a request with these headers and body and this uniform draw in [0, 1), splitting
        requests (when `sticky` is None; otherwise the router calls assign)."""
        if self.routes:
            routed = self.routed(headers, body)
            if routed is not None:
                return routed
        for bound, backend in self.split:
            if draw < bound:
                return backend
        return self.split[-1][1]  # unreachable: the last bound is 1.0 and draws are below it

    def assign(
        self, sticky: Sticky, headers: Headers, body: bytes = b"", new_id: Callable[[], str] = new_user_id
    ) -> Assignment:
        """The backend for a request by its user's key (`sticky` is this snapshot's): the routes first, then the
        key's bucket; a request without a key goes to the control (header mode) or gets a new id (cookie mode)."""
        routed = self.routed(headers, body) if self.routes else None
        if routed is not None:
            return Assignment(routed, None)
        key = sticky.key(headers)
        if key is not None:
            return Assignment(self.of_bucket(bucket(key)), KEY)
        if sticky.cookie is None:
            return Assignment(self.control, MISSING)
        made = new_id()
        return Assignment(self.of_bucket(bucket(made)), NEW, sticky.set_cookie(made))

    def of_bucket(self, number: int) -> Target:
        for bound, backend in self.buckets:
            if number < bound:
                return backend
        return self.buckets[-1][1]  # unreachable: the last bound is BUCKETS

    def mirrors(self, answered: Target, draw: float) -> Backend | None:
        """The backend a request `answered` answered is copied to, if this draw copies it."""
        mirror = self.mirror
        if mirror is not None and answered is mirror.source and draw < mirror.share:
            return mirror.target
        return None


def build_snapshot(config: RouterConfigV2, upstreams: Mapping[str, str] | None = None) -> Snapshot:
    """The snapshot of `config`; `upstreams` (model version -> base URL) replaces the document's backend URL of
    whichever backend serves that version (cluster DNS names do not resolve on a developer's machine)."""
    overrides = upstreams or {}
    backends = {
        name: Backend(name, spec.version, _base(overrides.get(spec.version, spec.url)))
        for name, spec in config.backends.items()
    }
    targets: dict[str, Target] = dict(backends)
    targets.update((name, EnsembleBackend.of(name, spec, backends)) for name, spec in config.ensembles.items())
    split: list[tuple[float, Target]] = []
    buckets: list[tuple[int, Target]] = []
    total = 0
    for share in config.split:
        if share.weight == 0:
            continue
        total += share.weight
        # Integer percent over 100: the last bound is exactly 1.0 (and BUCKETS), so every draw finds an entry.
        split.append((total / 100, targets[share.backend]))
        buckets.append((total * (BUCKETS // 100), targets[share.backend]))
    mirror = config.mirror
    return Snapshot(
        config=config,
        backends=backends,
        targets=targets,
        control=targets[config.control],
        split=tuple(split),
        buckets=tuple(buckets),
        routes=tuple((_matcher(route), targets[route.to]) for route in config.routes),
        sticky=None if config.sticky_by is None else Sticky.of(config.sticky_by),
        mirror=None
        if mirror is None or mirror.percent == 0
        else MirrorRule(backends[mirror.source], backends[mirror.to], mirror.percent / 100),
        fallbacks={
            name: Chain(tuple(targets[target] for target in chain.to), chain.latency_budget_seconds)
            for name, chain in config.fallbacks.items()
        },
        timeout_s=config.timeout_seconds,
        route_tag=config.route.encode(),
    )


def _matcher(route: Route) -> HeaderMatcher | FeatureMatcher:
    header = route.header_route()
    return FeatureMatcher.of(route) if header is None else HeaderMatcher.of(header)


def _base(url: str) -> str:
    return url.rstrip("/")


def uniform(seed: int | None = None) -> Callable[[], float]:
    """The split's draw: a bound `random.Random(seed).random`, uniform in [0, 1)."""
    return random.Random(seed).random
