from __future__ import annotations

import json
from typing import Any

import pytest

from modelserver.routing.config import RouterConfig, parse_document
from modelserver.routing.snapshot import CANARY, STABLE, Backend, HeaderMatcher, build_snapshot, uniform
from tests.unit.modelserver.routing.test_config import vector


def config(**fields: Any) -> RouterConfig:
    document = vector() | fields
    return parse_document(json.dumps({k: v for k, v in document.items() if v is not None}))


def test_backends_come_from_the_document_or_the_upstream_overrides() -> None:
    plain = build_snapshot(config())
    assert plain.stable == Backend(STABLE, "1", "http://churn-stable.prod.svc:80")
    assert plain.canary == Backend(CANARY, "2", "http://churn-canary.prod.svc:80")
    local = build_snapshot(config(), {"2": "http://127.0.0.1:9002/", "7": "http://127.0.0.1:9007"})
    assert local.stable.url == "http://churn-stable.prod.svc:80"
    assert local.canary is not None
    assert local.canary.url == "http://127.0.0.1:9002"
    assert local.canary.response_headers == ((b"x-modelrollout-version", b"2"), (b"x-modelrollout-role", b"canary"))
    assert (local.timeout_s, local.retry_on_stable, local.route) == (2.5, True, "churn")


@pytest.mark.parametrize(("canary", "mirror"), [(0, 0), (10, 5), (50, 50), (90, 0), (100, 100)])
def test_the_split_and_the_mirror_follow_the_weights(canary: int, mirror: int) -> None:
    snapshot = build_snapshot(
        config(weights={"stable": 100 - canary, "canary": canary}, mirrorPercent=mirror, headerRoute=None)
    )
    draw = uniform(seed=42)
    n = 20_000
    to_canary = sum(snapshot.choose((), draw()) is snapshot.canary for _ in range(n))
    mirrored = sum(snapshot.mirrors(draw()) for _ in range(n))
    # Binomial: 4.5 standard deviations, so a seeded run is far from the edge (and exact at 0 and 100).
    for count, percent in ((to_canary, canary), (mirrored, mirror)):
        p = percent / 100
        assert abs(count - n * p) <= 4.5 * (n * p * (1 - p)) ** 0.5


def test_a_seeded_split_is_reproducible() -> None:
    snapshot = build_snapshot(config())
    first, second = uniform(seed=7), uniform(seed=7)
    assert [snapshot.choose((), first()).role for _ in range(100)] == [
        snapshot.choose((), second()).role for _ in range(100)
    ]


def test_without_a_canary_everything_goes_to_stable() -> None:
    only_stable = parse_document(
        '{"schemaVersion": 1, "route": "r", "backends": {"stable": "http://s"}, "versions": {"stable": "1"}}'
    )
    snapshot = build_snapshot(only_stable)
    assert snapshot.canary is None
    assert snapshot.choose(((b"x-canary", b"yes"),), 0.0) is snapshot.stable
    assert not snapshot.mirrors(0.0)


def test_a_matching_header_goes_to_the_canary_whatever_the_weights() -> None:
    snapshot = build_snapshot(config(weights={"stable": 100, "canary": 0}))
    assert snapshot.choose(((b"x-canary", b"yes"),), 0.99) is snapshot.canary
    assert snapshot.choose(((b"x-canary", b"no"),), 0.0) is snapshot.stable
    assert snapshot.choose(((b"x-other", b"yes"),), 0.0) is snapshot.stable


@pytest.mark.parametrize(
    ("route", "headers", "matches"),
    [
        ({"header": "X-Canary", "exact": "yes"}, [(b"x-canary", b"yes")], True),
        ({"header": "x-canary", "exact": "yes"}, [(b"x-canary", b"Yes")], False),
        ({"header": "x-canary", "exact": "yes"}, [(b"x-canary", b"no"), (b"x-canary", b"yes")], True),
        ({"header": "x-canary", "exact": "yes"}, [(b"x-canarys", b"yes")], False),
        ({"header": "x-canary"}, [(b"x-canary", b"")], True),
        ({"header": "x-canary"}, [(b"accept", b"*/*")], False),
        ({"header": "x-user", "regex": "user-[0-9]+"}, [(b"x-user", b"user-42")], True),
        ({"header": "x-user", "regex": "user-[0-9]+"}, [(b"x-user", b"user-42x")], False),  # whole value
        ({"header": "x-user", "regex": "user-[0-9]+"}, [(b"x-user", b"xuser-42")], False),
        ({"header": "x-user", "exact": "é"}, [(b"x-user", "é".encode())], True),
    ],
)
def test_header_match(route: dict[str, str], headers: list[tuple[bytes, bytes]], matches: bool) -> None:
    parsed = config(headerRoute=route).header_route
    assert parsed is not None
    assert HeaderMatcher.of(parsed).matches(headers) is matches
