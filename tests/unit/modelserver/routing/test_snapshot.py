from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest
from testkit.vectors import full_document as vector
from testkit.vectors import full_v2_document

from modelrollout_contract.router import RouterConfig, parse_document
from modelrollout_contract.router_v2 import CANARY, STABLE, RouterConfigV2, parse_any, upgrade
from modelserver.routing.snapshot import (
    KEY,
    MISSING,
    NEW,
    Backend,
    HeaderMatcher,
    Snapshot,
    bucket,
    build_snapshot,
    cookie_value,
    uniform,
)


def v1(**fields: Any) -> RouterConfig:
    document = vector() | fields
    return parse_document(json.dumps({k: v for k, v in document.items() if v is not None}))


def config(**fields: Any) -> RouterConfigV2:
    """The version 2 routing of the full version 1 vector with `fields` changed."""
    return upgrade(v1(**fields))


def test_backends_come_from_the_document_or_the_upstream_overrides() -> None:
    plain = build_snapshot(config())
    assert plain.backends[STABLE] == Backend(STABLE, "1", "http://churn-stable.prod.svc:80")
    assert plain.backends.get(CANARY) == Backend(CANARY, "2", "http://churn-canary.prod.svc:80")
    local = build_snapshot(config(), {"2": "http://127.0.0.1:9002/", "7": "http://127.0.0.1:9007"})
    assert local.backends[STABLE].url == "http://churn-stable.prod.svc:80"
    canary = local.backends[CANARY]
    assert canary.url == "http://127.0.0.1:9002"
    assert canary.response_headers == ((b"x-modelrollout-version", b"2"), (b"x-modelrollout-role", b"canary"))
    assert (local.timeout_s, local.route) == (2.5, "churn")
    assert local.fallbacks[CANARY].then == (local.backends[STABLE],)  # retryOnStable


@pytest.mark.parametrize(("canary", "mirror"), [(0, 0), (10, 5), (50, 50), (90, 0), (100, 100)])
def test_the_split_and_the_mirror_follow_the_weights(canary: int, mirror: int) -> None:
    snapshot = build_snapshot(
        config(weights={"stable": 100 - canary, "canary": canary}, mirrorPercent=mirror, headerRoute=None)
    )
    draw = uniform(seed=42)
    n = 20_000
    to_canary = sum(snapshot.choose((), draw()) is snapshot.backends.get(CANARY) for _ in range(n))
    stable = snapshot.backends[STABLE]
    mirrored = sum(snapshot.mirrors(stable, draw()) is not None for _ in range(n))
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
    snapshot = build_snapshot(upgrade(only_stable))
    assert snapshot.backends.get(CANARY) is None
    assert snapshot.choose(((b"x-canary", b"yes"),), 0.0) is snapshot.backends[STABLE]
    assert snapshot.mirrors(snapshot.backends[STABLE], 0.0) is None


def test_a_matching_header_goes_to_the_canary_whatever_the_weights() -> None:
    snapshot = build_snapshot(config(weights={"stable": 100, "canary": 0}))
    assert snapshot.choose(((b"x-canary", b"yes"),), 0.99) is snapshot.backends.get(CANARY)
    assert snapshot.choose(((b"x-canary", b"no"),), 0.0) is snapshot.backends[STABLE]
    assert snapshot.choose(((b"x-other", b"yes"),), 0.0) is snapshot.backends[STABLE]


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
    parsed = v1(headerRoute=route).header_route
    assert parsed is not None
    assert HeaderMatcher.of(parsed).matches(headers) is matches


# --- sticky assignment (stickyBy) ---------------------------------------------------------------------------


def crc32_by_hand(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) bit by bit: the rule is the standard CRC, not
    whatever zlib happens to compute."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize(
    ("key", "crc", "expected"),
    [
        ("123456789", 0xCBF43926, 262),  # the standard CRC-32 check value
        ("", 0, 0),
        ("a", 0xE8B7BE43, 5907),
        ("alice", 0x278EBC47, 5735),
        ("bob", 0xF5CBB140, 7104),
        ("user-42", 0x7D06B873, 2435),
        ("é", 0x0E048D3E, 9326),  # UTF-8 bytes c3 a9
        ("5f1e8c0a9b7d4e2f8a6c3b1d0e9f7a25", 0x63C793DD, 3901),
    ],
)
def test_a_keys_bucket_is_its_crc32_modulo_10000(key: str, crc: int, expected: int) -> None:
    assert crc32_by_hand(key.encode()) == crc
    assert crc % 10_000 == expected
    assert bucket(key) == bucket(key.encode()) == expected


def sticky_snapshot(canary: int, by: dict[str, str] | None = None, header_route: Any = None) -> Snapshot:
    return build_snapshot(
        config(
            weights={"stable": 100 - canary, "canary": canary},
            headerRoute=header_route,
            stickyBy=by or {"header": "x-user-id"},
        )
    )


@pytest.mark.parametrize(("canary", "key", "role"), [(24, "user-42", STABLE), (25, "user-42", CANARY),
                                                     (3, "123456789", CANARY), (2, "123456789", STABLE)])  # fmt: skip
def test_a_key_goes_to_the_canary_iff_its_bucket_is_below_the_weight_times_100(
    canary: int, key: str, role: str
) -> None:
    snapshot = sticky_snapshot(canary)
    assert snapshot.sticky is not None
    assignment = snapshot.assign(snapshot.sticky, ((b"x-user-id", key.encode()),))
    assert (assignment.backend.role, assignment.source, assignment.set_cookie) == (role, KEY, None)


@pytest.mark.parametrize("canary", [0, 1, 10, 30, 50, 90, 99, 100])
def test_the_canary_gets_its_weight_as_a_share_of_users(canary: int) -> None:
    snapshot = sticky_snapshot(canary)
    sticky = snapshot.sticky
    assert sticky is not None
    rng = random.Random(1234)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(10_000)]
    roles = [snapshot.assign(sticky, ((b"x-user-id", i.encode()),)).backend.role for i in ids]
    share = 100 * roles.count(CANARY) / len(ids)
    if canary in (0, 100):
        assert share == canary  # exact: nobody / everybody
    else:
        assert abs(share - canary) <= 2, share
    # One user, one variant: asking again (another snapshot of the same document, as in another process) agrees.
    again = sticky_snapshot(canary)
    assert again.sticky is not None
    assert [again.assign(again.sticky, ((b"x-user-id", i.encode()),)).backend.role for i in ids[:500]] == roles[:500]


def test_raising_the_weight_only_moves_users_to_the_canary() -> None:
    keys = [f"user-{i}".encode() for i in range(2_000)]
    before, after = sticky_snapshot(20), sticky_snapshot(50)
    assert before.sticky is not None
    assert after.sticky is not None
    for key in keys:
        if before.assign(before.sticky, ((b"x-user-id", key),)).backend.role == CANARY:
            assert after.assign(after.sticky, ((b"x-user-id", key),)).backend.role == CANARY


def test_header_mode_without_the_key_is_stable_and_the_header_route_wins() -> None:
    snapshot = sticky_snapshot(100, header_route={"header": "x-canary", "exact": "yes"})
    sticky = snapshot.sticky
    assert sticky is not None
    for headers in [(), ((b"x-user-id", b""),), ((b"x-user-id", b"  "),), ((b"x-other", b"u1"),)]:
        assignment = snapshot.assign(sticky, headers)
        stable = snapshot.backends[STABLE]
        assert (assignment.backend, assignment.source, assignment.set_cookie) == (stable, MISSING, None)
    # The key's header name is case-insensitive in the document (ASGI gives names in lower case).
    upper = sticky_snapshot(100, by={"header": "X-User-Id"})
    assert upper.sticky is not None
    assert upper.assign(upper.sticky, ((b"x-user-id", b"u1"),)).backend is upper.backends.get(CANARY)
    stays = sticky_snapshot(0, header_route={"header": "x-canary", "exact": "yes"})
    assert stays.sticky is not None
    routed = stays.assign(stays.sticky, ((b"x-user-id", b"u1"), (b"x-canary", b"yes")))
    assert (routed.backend, routed.source) == (stays.backends.get(CANARY), None)


def test_cookie_mode_gives_a_new_user_an_id_assigned_by_the_same_rule() -> None:
    snapshot = sticky_snapshot(30, by={"cookie": "uid"})
    sticky = snapshot.sticky
    assert sticky is not None
    made = iter(["123456789"])  # bucket 262, below 3000: the canary
    first = snapshot.assign(sticky, (), new_id=lambda: next(made))
    assert (first.backend, first.source) == (snapshot.backends.get(CANARY), NEW)
    assert first.set_cookie == b"uid=123456789; Path=/; Max-Age=2592000; SameSite=Lax; HttpOnly"
    bob = snapshot.assign(sticky, ((b"cookie", b"uid=bob"),), new_id=lambda: "unused")  # 7104: stable
    assert (bob.backend, bob.source, bob.set_cookie) == (snapshot.backends[STABLE], KEY, None)
    fresh = snapshot.assign(sticky, ())
    assert fresh.set_cookie is not None
    value = fresh.set_cookie.split(b";")[0].removeprefix(b"uid=")
    assert len(value) == 32
    assert int(value, 16) >= 0
    assert fresh.backend is (snapshot.backends.get(CANARY) if bucket(value) < 3000 else snapshot.backends[STABLE])


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (b"uid=abc", b"abc"),
        (b"a=1; uid=abc; b=2", b"abc"),
        (b"a=1;uid=abc;b=2", b"abc"),
        (b"  uid = abc  ", b"abc"),
        (b'uid="abc"', b"abc"),
        (b"xuid=abc; uidx=def", None),  # names that merely contain it
        (b"a=uid; b=1", None),
        (b"uid=; uid=second", b"second"),
        (b"uid=abc=def", b"abc=def"),
        (b"uid", None),
        (b"uid=", None),
        (b'uid="', b'"'),
        (b";;;==;uid", None),
        (b"\xff\xfe; uid=\xc3\xa9", "é".encode()),
        (b"", None),
    ],
)
def test_cookie_values(header: bytes, value: bytes | None) -> None:
    assert cookie_value(header, b"uid") == value


def test_a_malformed_or_absent_cookie_is_a_new_user_never_an_error() -> None:
    snapshot = sticky_snapshot(50, by={"cookie": "uid"})
    sticky = snapshot.sticky
    assert sticky is not None
    for headers in [(), ((b"cookie", b"uid"),), ((b"cookie", b"\x00\xff;;=;"),), ((b"x-user-id", b"u1"),)]:
        assignment = snapshot.assign(sticky, headers, new_id=lambda: "alice")
        assert (assignment.source, assignment.backend.role) == (NEW, STABLE)  # alice: 5735 >= 5000
        assert assignment.set_cookie is not None
        assert assignment.set_cookie.startswith(b"uid=alice;")
    # Several Cookie headers (HTTP/2 may split them): any of them may hold it.
    split = snapshot.assign(sticky, ((b"cookie", b"a=1"), (b"cookie", b"uid=user-42")))
    assert (split.source, split.backend.role) == (KEY, CANARY)


def test_no_sticky_assignment_without_stickyBy() -> None:
    assert build_snapshot(config(stickyBy=None)).sticky is None


# --- version 2: A/B/n, routes to any backend, a mirror between any two --------------------------------------


def v2(**fields: Any) -> RouterConfigV2:
    document = full_v2_document() | fields
    return parse_any(json.dumps({k: v for k, v in document.items() if v is not None}))


def abn(weights: dict[str, int], **fields: Any) -> Snapshot:
    return build_snapshot(v2(split=[{"backend": b, "weight": w} for b, w in weights.items()], **fields))


@pytest.mark.parametrize("weights", [{"b": 20, "c": 20, "stable": 60}, {"b": 0, "c": 50, "stable": 50},
                                     {"b": 1, "c": 1, "stable": 98}, {"stable": 0, "c": 0, "b": 100}])  # fmt: skip
def test_n_variants_get_their_weights_as_shares_of_requests(weights: dict[str, int]) -> None:
    snapshot = abn(weights, routes=None)
    draw = uniform(seed=3)
    n = 30_000
    chosen = [snapshot.choose((), draw()).role for _ in range(n)]
    for name, weight in weights.items():
        p, count = weight / 100, chosen.count(name)
        assert abs(count - n * p) <= 4.5 * (n * p * (1 - p)) ** 0.5, (name, count)
    assert "rules" not in chosen  # a backend outside the split gets nothing


@pytest.mark.parametrize("weights", [{"b": 20, "c": 20, "stable": 60}, {"a1": 34, "b": 33, "c": 33}])
def test_n_variants_get_their_weights_as_shares_of_users_and_every_user_sticks(weights: dict[str, int]) -> None:
    backends = {name: {"url": f"http://{name}", "version": name} for name in weights}
    split = [{"backend": b, "weight": w} for b, w in weights.items()]
    snapshot = build_snapshot(v2(backends=backends, split=split, control=split[0]["backend"], routes=None,
                                 mirror=None, fallbacks=None))  # fmt: skip
    sticky = snapshot.sticky
    assert sticky is not None
    rng = random.Random(99)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4).hex.encode() for _ in range(20_000)]
    chosen = [snapshot.assign(sticky, ((b"x-user-id", i),)).backend.role for i in ids]
    for name, weight in weights.items():
        assert abs(100 * chosen.count(name) / len(ids) - weight) <= 2, (name, chosen.count(name))
    again = build_snapshot(snapshot.config)  # another replica, or the router restarted
    assert again.sticky is not None
    assert [again.assign(again.sticky, ((b"x-user-id", i),)).backend.role for i in ids] == chosen


def test_a_users_variant_is_the_range_of_buckets_their_key_falls_in() -> None:
    snapshot = abn({"b": 20, "c": 20, "stable": 60})
    assert snapshot.sticky is not None
    for key, expected in [("123456789", "b"), ("user-42", "c"), ("a", "stable")]:  # buckets 262, 2435, 5907
        assert snapshot.assign(snapshot.sticky, ((b"x-user-id", key.encode()),)).backend.role == expected
    assert snapshot.of_bucket(1999).role == "b"
    assert snapshot.of_bucket(2000).role == "c"
    assert snapshot.of_bucket(3999).role == "c"
    assert snapshot.of_bucket(4000).role == "stable"
    assert snapshot.of_bucket(9999).role == "stable"


def test_growing_the_first_variant_keeps_its_users_and_the_rest_follow_the_ranges() -> None:
    # Ranges are cumulative in the split's order: the first entry's users stay when it grows, while the later
    # entries' ranges shift (so an A/B/n test keeps its weights while it runs; a canary, two entries, only gains).
    keys = [f"user-{i}".encode() for i in range(3_000)]
    before, after = abn({"b": 10, "c": 20, "stable": 70}), abn({"b": 30, "c": 20, "stable": 50})
    assert before.sticky is not None
    assert after.sticky is not None
    moved = 0
    for key in keys:
        was = before.assign(before.sticky, ((b"x-user-id", key),)).backend.role
        now = after.assign(after.sticky, ((b"x-user-id", key),)).backend.role
        assert was != "b" or now == "b", key
        assert now == after.of_bucket(bucket(key)).role
        moved += was != now
    assert 0.3 * len(keys) <= moved <= 0.5 * len(keys)  # [1000, 5000) of 10,000 buckets changed hands: 40%


def test_routes_are_tried_in_order_before_the_split_and_a_keyless_user_goes_to_the_control() -> None:
    snapshot = abn({"b": 0, "c": 0, "stable": 100}, control="c")
    sticky = snapshot.sticky
    assert sticky is not None
    both = ((b"x-variant", b"c"), (b"x-country", b"FR"))
    assert snapshot.choose(both, 0.5).role == "c"  # the first route that matches
    assert snapshot.choose(((b"x-country", b"BE"),), 0.5).role == "b"  # weight 0 in the split: a route still reaches it
    assert snapshot.choose(((b"x-country", b"DE"),), 0.5).role == "stable"
    routed = snapshot.assign(sticky, ((b"x-country", b"FR"), (b"x-user-id", b"u1")))
    assert (routed.backend.role, routed.source) == ("b", None)
    keyless = snapshot.assign(sticky, ())
    assert (keyless.backend.role, keyless.source) == ("c", MISSING)


def test_a_mirror_copies_only_what_its_source_answered() -> None:
    snapshot = abn({"b": 20, "c": 20, "stable": 60}, mirror={"from": "c", "to": "stable", "percent": 100})
    assert snapshot.mirrors(snapshot.backends["c"], 0.99) is snapshot.backends[STABLE]
    assert snapshot.mirrors(snapshot.backends[STABLE], 0.0) is None
    none = abn({"b": 20, "c": 20, "stable": 60}, mirror={"from": "c", "to": "stable", "percent": 0})
    assert none.mirror is None


def test_fallback_chains_are_resolved_to_backends() -> None:
    snapshot = build_snapshot(v2(), {"r1": "http://127.0.0.1:9001/"})
    stable = snapshot.fallbacks[STABLE]
    assert [b.role for b in stable.then] == ["rules"]
    assert stable.then[0].url == "http://127.0.0.1:9001"  # the override by version applies to a fallback too
    assert stable.budget_s == 0.2
    assert [b.role for b in snapshot.fallbacks["b"].then] == [STABLE, "rules"]
    assert snapshot.fallbacks["b"].budget_s is None
    assert "c" not in snapshot.fallbacks
