"""Sticky A/B assignment (stickyBy) through the real router to real model servers: one user, one variant."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from testkit.waiting import wait_until

from tests.integration.router.conftest import Fleet, Router, StartRouter, document, post_concurrently, v2_body

pytestmark = pytest.mark.integration

INFER = "/v2/models/clf/infer"
USER = "x-user-id"
SET_COOKIE_ATTRIBUTES = "; Path=/; Max-Age=2592000; SameSite=Lax; HttpOnly"


def sticky(by: Mapping[str, str], *, weights: tuple[int, int] = (70, 30), **fields: Any) -> dict[str, Any]:
    return document(weights=weights, **fields) | {"stickyBy": dict(by)}


def expected_version(key: str, canary: int) -> str:
    """The rule, computed here independently of the router's code."""
    return "2" if zlib.crc32(key.encode()) % 10_000 < canary * 100 else "1"


def post(client: httpx.Client, fleet: Fleet, i: int, headers: Mapping[str, str] | None = None) -> httpx.Response:
    response = client.post(INFER, json=v2_body(fleet.x[i % len(fleet.x)]), headers=dict(headers or {}))
    assert response.status_code == 200, response.text
    return response


def versions_of(router: Router, fleet: Fleet, requests: Sequence[Mapping[str, str]]) -> list[str]:
    """The version answering each request (sent with these headers) from 8 client threads, in order."""
    bodies = [v2_body(fleet.x[i % len(fleet.x)]) for i in range(len(requests))]
    answers = post_concurrently(router.url, INFER, bodies, requests)
    for answer in answers:
        assert answer.status_code == 200, answer.text
    return [answer.headers["x-modelrollout-version"] for answer in answers]


@pytest.fixture
def fresh_client(fleet: Fleet) -> Iterator[Any]:
    """A new client per call, as a new browser: no cookies but the ones a test gives it."""
    made: list[httpx.Client] = []

    def make(router: Router) -> httpx.Client:
        client = httpx.Client(base_url=router.url, timeout=30)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_each_user_keeps_one_version_and_the_canary_gets_its_share_of_users(
    fleet: Fleet, start_router: StartRouter
) -> None:
    router = start_router(sticky({"header": USER}, weights=(70, 30)), upstreams=fleet.upstreams("clf"))
    users = [f"user-{i:05d}" for i in range(2_000)]
    rounds = 3
    answered = versions_of(router, fleet, [{USER: user} for _ in range(rounds) for user in users])
    by_user: dict[str, set[str]] = {user: set() for user in users}
    for i, version in enumerate(answered):
        by_user[users[i % len(users)]].add(version)
    assert all(len(seen) == 1 for seen in by_user.values()), [u for u, seen in by_user.items() if len(seen) > 1]
    on_canary = [user for user, seen in by_user.items() if seen == {"2"}]
    share = 100 * len(on_canary) / len(users)
    assert abs(share - 30) <= 4, share
    # Exactly the rule: crc32(key) % 10000 < weight * 100.
    assert all(by_user[user] == {expected_version(user, 30)} for user in users)
    counted = router.sample("modelrouter_assignments_total", route="clf", version="2", source="key")
    assert counted == rounds * len(on_canary)
    assert router.sample("modelrouter_assignments_total", route="clf", version="1", source="key") == rounds * (
        len(users) - len(on_canary)
    )


def test_two_router_replicas_assign_users_alike(fleet: Fleet, start_router: StartRouter) -> None:
    routing = sticky({"header": USER}, weights=(50, 50))
    first = start_router(routing, upstreams=fleet.upstreams("clf"))
    second = start_router(routing, upstreams=fleet.upstreams("clf"))
    requests = [{USER: f"replica-{i}"} for i in range(300)]
    assert versions_of(first, fleet, requests) == versions_of(second, fleet, requests)


def test_header_mode_without_the_key_is_the_control_group(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(sticky({"header": USER}, weights=(0, 100)), upstreams=fleet.upstreams("clf"))
    assert {post(router.client, fleet, i).headers["x-modelrollout-version"] for i in range(20)} == {"1"}
    assert {post(router.client, fleet, i, {USER: "u1"}).headers["x-modelrollout-version"] for i in range(5)} == {"2"}
    assert "set-cookie" not in post(router.client, fleet, 0).headers
    assert router.sample("modelrouter_assignments_total", route="clf", version="1", source="missing") == 21


def test_cookie_mode_gives_a_new_user_an_id_that_sticks(
    fleet: Fleet, start_router: StartRouter, fresh_client: Any
) -> None:
    router = start_router(sticky({"cookie": "uid"}, weights=(50, 50)), upstreams=fleet.upstreams("clf"))
    seen: dict[str, int] = {"1": 0, "2": 0}
    for user in range(40):
        browser = fresh_client(router)
        first = post(browser, fleet, user)
        set_cookie = first.headers.get_list("set-cookie")
        assert len(set_cookie) == 1, set_cookie
        name_value, _, attributes = set_cookie[0].partition(";")
        assert "; " + attributes.lstrip() == SET_COOKIE_ATTRIBUTES
        name, _, uid = name_value.partition("=")
        assert name == "uid"
        assert len(uid) == 32
        int(uid, 16)  # uuid4().hex
        version = first.headers["x-modelrollout-version"]
        assert version == expected_version(uid, 50)
        seen[version] += 1
        # Sent back as a browser would (the header by hand, then by the client's own cookie jar): it sticks.
        for i in range(3):
            again = post(fresh_client(router), fleet, i, {"cookie": f"theme=dark; uid={uid}"})
            assert again.headers["x-modelrollout-version"] == version
            assert "set-cookie" not in again.headers
        for i in range(3):
            again = post(browser, fleet, i)
            assert again.headers["x-modelrollout-version"] == version
            assert "set-cookie" not in again.headers
    assert seen["1"] > 0
    assert seen["2"] > 0  # 40 users at 50%: both variants (a miss has probability 2 * 2**-40)
    assert router.sample("modelrouter_assignments_total", route="clf", version="2", source="new") == seen["2"]
    assert router.sample("modelrouter_assignments_total", route="clf", version="2", source="key") == 6 * seen["2"]


def test_the_header_route_still_wins(fleet: Fleet, start_router: StartRouter) -> None:
    header = {"header": "x-canary", "exact": "always"}
    router = start_router(sticky({"header": USER}, weights=(100, 0), header=header), upstreams=fleet.upstreams("clf"))
    routed = post(router.client, fleet, 0, {USER: "u1", "x-canary": "always"})
    assert routed.headers["x-modelrollout-version"] == "2"
    assert post(router.client, fleet, 0, {USER: "u1"}).headers["x-modelrollout-version"] == "1"
    cookie = start_router(sticky({"cookie": "uid"}, weights=(100, 0), header=header), upstreams=fleet.upstreams("clf"))
    routed = post(cookie.client, fleet, 0, {"x-canary": "always"})
    assert routed.headers["x-modelrollout-version"] == "2"
    assert "set-cookie" not in routed.headers  # the header route decided: no assignment made
    assert router.sample("modelrouter_assignments_total", route="clf", version="2", source="key") == 0


MALFORMED_COOKIES = [
    (b"uid", False),
    (b";;;", False),
    (b"=", False),
    (b"uid=", False),
    (b"uid=;uid", False),
    (b"\xff\xfe;\x80=\x81", False),
    (b"a" * 4000, False),
    (b'uid="', True),  # strange, but a key: `"`
    (b"uid=a=b=c;;=;", True),
    (b"uid=\xc3\xa9; x", True),
]


def test_a_malformed_cookie_is_a_new_user_not_a_5xx(fleet: Fleet, start_router: StartRouter, fresh_client: Any) -> None:
    router = start_router(sticky({"cookie": "uid"}, weights=(50, 50)), upstreams=fleet.upstreams("clf"))
    for cookie, usable in MALFORMED_COOKIES:
        # Raw bytes go out as they are (httpx would refuse some of them in a str).
        headers: Any = {b"cookie": cookie}
        response = fresh_client(router).post(INFER, json=v2_body(fleet.x[0]), headers=headers)
        assert response.status_code == 200, (cookie, response.text)
        if usable:
            assert "set-cookie" not in response.headers, cookie
        else:
            assert response.headers["set-cookie"].startswith("uid="), cookie
    assert "Traceback" not in router.log()


def test_hot_reload_from_requests_to_users(fleet: Fleet, start_router: StartRouter) -> None:
    router = start_router(document(weights=(50, 50)), upstreams=fleet.upstreams("clf"))
    headers = {USER: "hot-reload-user"}
    before = {post(router.client, fleet, i, headers).headers["x-modelrollout-version"] for i in range(40)}
    assert before == {"1", "2"}  # split per request: 2 * 2**-40 to fail
    router.configure(sticky({"header": USER}, weights=(50, 50)))
    wait_until(
        lambda: router.client.get("/readyz").json()["stickyBy"] == {"header": USER},
        within=10,
        interval=0.02,
        what=lambda: f"stickyBy to be loaded:\n{router.log()}",
    )
    after = {post(router.client, fleet, i, headers).headers["x-modelrollout-version"] for i in range(40)}
    assert after == {expected_version("hot-reload-user", 50)}
