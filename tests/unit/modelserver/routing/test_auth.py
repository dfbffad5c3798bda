"""API keys and per-key rate limits (routing.auth, routing.limits): the keys file's rules, who is admitted, the token
bucket's arithmetic on a fake clock, Retry-After, reloads, and the router answering 401 and 429 itself."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from testkit.vectors import full_document

from modelserver.routing.app import RouterApp
from modelserver.routing.auth import (
    APPLIED,
    INVALID,
    UNCHANGED,
    Gate,
    Holder,
    KeysFileError,
    Refusal,
    parse_keys,
    presented_key,
)
from modelserver.routing.limits import TokenBucket, retry_after
from modelserver.routing.messages import Reply
from modelserver.routing.metrics import RouterMetrics
from tests.unit.modelserver.routing.test_app import Idle, call

KEY_A = "team-a-0123456789abcdef"
KEY_B = "batch-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keys(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


def default_keys() -> bytes:
    digest = hashlib.sha256(KEY_B.encode()).hexdigest()
    limited = {"name": "team-a", "key": KEY_A, "requestsPerSecond": 2, "burst": 3}
    return keys(limited, {"name": "batch", "sha256": digest})


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    bucket = TokenBucket.full(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token flows in every half second
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(100.0) == 0.0
    assert bucket.tokens == pytest.approx(2.0)  # refilled up to the burst, less one
    assert bucket.take(99.0) == 0.0  # a clock that steps back adds nothing


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after(s) for s in (0.001, 0.5, 1.0, 1.2, 7.9)] == [1, 1, 1, 2, 8]


def test_the_key_is_read_from_bearer_or_x_api_key() -> None:
    assert presented_key([(b"authorization", b"Bearer  abc ")]) == b"abc"
    assert presented_key([(b"authorization", b"bearer abc")]) == b"abc"
    assert presented_key([(b"x-api-key", b"k1")]) == b"k1"
    assert presented_key([(b"authorization", b"Basic dXNlcg==")]) is None
    assert presented_key([(b"x-api-key", b" "), (b"authorization", b"Bearer k2")]) == b"k2"
    assert presented_key([]) is None


def test_keys_are_admitted_refused_and_limited() -> None:
    clock = Clock()
    gate = Gate(default_keys(), clock)
    assert isinstance(gate.admit(bearer(KEY_B)), Holder)  # by its SHA-256, with no limit
    for _ in range(50):
        assert isinstance(gate.admit([(b"x-api-key", KEY_B.encode())]), Holder)
    missing = gate.admit([])
    assert isinstance(missing, Refusal)
    assert missing.status == 401
    assert "an API key is required" in missing.message
    wrong = gate.admit(bearer("not-a-key-of-ours-at-all"))
    assert isinstance(wrong, Refusal)
    assert (wrong.status, wrong.message) == (401, "the API key is not valid")
    assert [isinstance(gate.admit(bearer(KEY_A)), Holder) for _ in range(4)] == [True, True, True, False]
    limited = gate.admit(bearer(KEY_A))
    assert isinstance(limited, Refusal)
    assert (limited.status, limited.key, limited.retry_after_s) == (429, "team-a", pytest.approx(0.5))
    assert "over its limit of 2 requests a second" in limited.message
    clock.now += 0.5
    assert isinstance(gate.admit(bearer(KEY_A)), Holder)


def test_a_reload_keeps_the_buckets_of_unchanged_limits_and_ignores_an_invalid_file() -> None:
    clock = Clock()
    gate = Gate(default_keys(), clock)
    for _ in range(3):
        gate.admit(bearer(KEY_A))
    assert gate.apply(default_keys(), origin="test") == UNCHANGED
    more = keys({"name": "team-a", "key": KEY_A, "requestsPerSecond": 2, "burst": 3}, {"name": "c", "key": "c" * 20})
    assert gate.apply(more, origin="test") == APPLIED
    assert isinstance(gate.admit(bearer(KEY_A)), Refusal)  # still empty: rewriting the file refilled nobody
    assert isinstance(gate.admit(bearer("c" * 20)), Holder)
    assert isinstance(gate.admit(bearer(KEY_B)), Refusal)  # removed
    assert gate.apply(b"{", origin="test") == INVALID
    assert isinstance(gate.admit(bearer("c" * 20)), Holder)  # the last valid keys stay
    raised = keys({"name": "team-a", "key": KEY_A, "requestsPerSecond": 50})
    assert gate.apply(raised, origin="test") == APPLIED
    assert isinstance(gate.admit(bearer(KEY_A)), Holder)  # a new limit: a new, full bucket


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (keys(), "keys: List should have at least 1 item"),
        (keys({"name": "a"}), "give exactly one of key or sha256"),
        (keys({"name": "a", "key": KEY_A, "sha256": "0" * 64}), "give exactly one of key or sha256"),
        (keys({"name": "a", "key": "short"}), "keys.0.key: Value should have at least 16 items"),
        (keys({"name": "a", "sha256": "xyz"}), "keys.0.sha256: String should match pattern"),
        (keys({"name": "a", "key": KEY_A, "burst": 5}), "burst needs requestsPerSecond"),
        (keys({"name": "a", "key": KEY_A, "requestsPerSecond": 0}), "keys.0.requestsPerSecond"),
        (keys({"name": "a", "key": KEY_A}, {"name": "a", "key": KEY_B}), "two keys are named 'a'"),
        (keys({"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_A}), "key 'b' is the same key as another"),
        (keys({"name": "a b", "key": KEY_A}), "keys.0.name"),
        (b"[]", "the API keys file is invalid"),
    ],
)
def test_an_invalid_keys_file_is_refused_naming_the_field(document: bytes, message: str) -> None:
    with pytest.raises(KeysFileError) as refused:
        parse_keys(document)
    assert message in str(refused.value)


def test_a_key_in_the_file_is_never_shown() -> None:
    assert KEY_A not in repr(parse_keys(default_keys()))


async def test_the_router_answers_401_and_429_itself_and_drops_the_key_headers() -> None:
    metrics = RouterMetrics(CollectorRegistry())
    router = RouterApp(source=Idle(), metrics=metrics, gate=Gate(default_keys(), Clock()), seed=7)
    # No mirror: the recorder below stands in for the proxy's forwarding only (with the shared vector's 5% mirror,
    # one request in twenty answered by stable would be copied through a method it does not have).
    router.routing.apply(json.dumps(full_document() | {"mirrorPercent": 0}), origin="test")
    forwarded: list[list[tuple[bytes, bytes]]] = []

    class Recorder:
        async def forward(self, snapshot: Any, backend: Any, request: Any) -> Reply:
            forwarded.append(request.headers)
            return Reply(200, [(b"content-type", b"application/json")], b"{}", backend, answered=True)

    router.proxy = Recorder()  # type: ignore[assignment]
    assert (await call(router, "/healthz"))[0] == 200  # the router's own endpoints need no key
    status, headers, body = await call(router, "/v2/models/churn/infer", method="POST")
    assert (status, headers[b"www-authenticate"]) == (401, b'Bearer realm="modelrollout"')
    assert orjson.loads(body)["error"].startswith("an API key is required")
    headers_in = [*bearer(KEY_A), (b"x-api-key", KEY_A.encode()), (b"x-user-id", b"u1")]
    statuses = [(await call(router, "/infer", method="POST", headers=headers_in))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert forwarded[0] == [(b"content-type", b"application/json"), (b"x-user-id", b"u1"),
                            (b"x-modelrollout-via", b"churn")]  # no key goes on  # fmt: skip
    status, headers, _ = await call(router, "/infer", method="POST", headers=headers_in)
    assert (status, headers[b"retry-after"]) == (429, b"1")
    sample = metrics.registry.get_sample_value
    labels = {"route": "churn", "key": "team-a"}
    assert sample("modelrouter_api_key_requests_total", labels | {"result": "admitted"}) == 3
    assert sample("modelrouter_api_key_requests_total", labels | {"result": "rate_limited"}) == 2
    assert sample("modelrouter_rejected_total", {"route": "churn", "reason": "unauthorized"}) == 1
    assert sample("modelrouter_rejected_total", {"route": "churn", "reason": "rate_limited"}) == 2
