"""The Notifier's queues without a network (httpx.MockTransport answers): order per webhook, dedupe, bounded queues,
retries, giving up with one NotificationFailed per streak, Secrets resolved by the worker. No timing asserted; the
retry delays are made tiny."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from modelrollout.api.notifications import NotificationsSpec
from modelrollout.notify.bodies import ModelDeploymentRef, Notification
from modelrollout.notify.sender import Notifier
from modelrollout.settings import DefaultWebhook, NotificationSettings

FAST = {"notify_retry_initial_s": 0.001, "notify_retry_max_s": 0.002}
INVOLVED = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "churn"}}


def note(n: int, *, kinds: tuple[str, ...] = ("stepReached",), name: str = "churn") -> Notification:
    return Notification.of(
        id_=f"{name}.{n:04x}", kinds=list(kinds), event=("Normal", f"Reason{n}", f"event {n}"),  # type: ignore[arg-type]
        subject=ModelDeploymentRef(namespace="ml", name=name), status=None, time=datetime(2026, 12, 4, tzinfo=UTC),
    )  # fmt: skip


def hooks(*urls: str, **extra: Any) -> NotificationsSpec:
    return NotificationsSpec.model_validate(
        {"operatorDefaults": False, "webhooks": [{"name": f"h{i}", "url": u, **extra} for i, u in enumerate(urls)]}
    )


class World:
    def __init__(self, answer: Callable[[httpx.Request], Any], **settings: Any) -> None:
        self.received: list[tuple[str, dict[str, Any], httpx.Headers]] = []
        self.warnings: list[tuple[str, str]] = []
        self.secrets: dict[tuple[str, str, str], str] = {}

        async def handler(request: httpx.Request) -> httpx.Response:
            self.received.append((str(request.url), json.loads(request.content), request.headers))
            result = answer(request)
            return await result if asyncio.iscoroutine(result) else result

        async def read_secret(namespace: str, name: str, key: str) -> str | None:
            return self.secrets.get((namespace, name, key))

        async def post_warning(involved: Mapping[str, Any], reason: str, message: str) -> None:
            self.warnings.append((reason, message))

        self.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        self.notifier = Notifier(
            NotificationSettings(**{**FAST, **settings}),
            read_secret=read_secret,
            post_warning=post_warning,
            client=self.client,
        )

    def ids(self, url: str | None = None) -> list[str]:
        return [body["id"] for u, body, _ in self.received if url is None or u == url]

    async def settle(self) -> None:
        for _ in range(1000):
            if self.notifier.pending() == 0 and all(
                lane.worker is None or not lane.queue for lane in self.notifier._lanes.values()
            ):
                await asyncio.sleep(0.01)
                if self.notifier.pending() == 0:
                    return
            await asyncio.sleep(0.005)
        raise AssertionError("the notifier never settled")


@pytest.fixture
async def closing() -> AsyncIterator[list[World]]:
    made: list[World] = []
    yield made
    for world in made:
        await world.notifier.close()
        await world.client.aclose()


def ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="ok")


async def test_each_webhook_gets_its_notifications_in_order_once_with_the_id_as_idempotency_key(
    closing: list[World],
) -> None:
    world = World(ok)
    closing.append(world)
    spec = hooks("http://a.test/x", "http://b.test/y")
    for n in range(5):
        assert world.notifier.submit(note(n), spec, INVOLVED) == 2
    assert world.notifier.submit(note(3), spec, INVOLVED) == 0, "an id already queued is a duplicate"
    await world.settle()
    assert world.ids("http://a.test/x") == [f"churn.{n:04x}" for n in range(5)]
    assert world.ids("http://b.test/y") == [f"churn.{n:04x}" for n in range(5)]
    assert all(headers["Idempotency-Key"] == body["id"] for _, body, headers in world.received)
    # Delivered ids stay remembered: told again (a pass done again), nothing is sent.
    assert world.notifier.submit(note(0), spec, INVOLVED) == 0


async def test_a_webhook_that_does_not_want_a_kind_gets_nothing(closing: list[World]) -> None:
    world = World(ok)
    closing.append(world)
    spec = hooks("http://a.test/x", events=["promoted", "rolledBack"])
    assert world.notifier.submit(note(1, kinds=("stepReached",)), spec, INVOLVED) == 0
    assert world.notifier.submit(note(2, kinds=("rolledBack", "analysisFailed")), spec, INVOLVED) == 1
    await world.settle()
    assert world.ids() == ["churn.0002"]


async def test_the_dedupe_memory_is_bounded_oldest_first(closing: list[World]) -> None:
    world = World(ok, notify_dedupe_limit=2)
    closing.append(world)
    spec = hooks("http://a.test/x")
    for n in range(3):
        world.notifier.submit(note(n), spec, INVOLVED)
    await world.settle()
    assert world.notifier.submit(note(0), spec, INVOLVED) == 1, "forgotten: beyond the memory's bound"
    assert world.notifier.submit(note(2), spec, INVOLVED) == 0


async def test_a_full_queue_drops_its_oldest_and_keeps_the_order_of_the_rest(closing: list[World]) -> None:
    release = asyncio.Event()

    async def held(_request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(204)

    world = World(held, notify_queue_limit=2)
    closing.append(world)
    spec = hooks("http://a.test/x")
    world.notifier.submit(note(0), spec, INVOLVED)
    await asyncio.sleep(0.01)  # note 0 is in flight, out of the queue
    for n in (1, 2, 3):
        world.notifier.submit(note(n), spec, INVOLVED)
    assert world.notifier.pending() == 2
    release.set()
    await world.settle()
    assert world.ids() == ["churn.0000", "churn.0002", "churn.0003"]


async def test_a_5xx_or_429_is_retried_and_a_slow_receiver_does_not_hold_up_another(closing: list[World]) -> None:
    answers = {"http://a.test/x": [500, 429, 200], "http://b.test/y": [200, 200]}

    def answer(request: httpx.Request) -> httpx.Response:
        code = answers[str(request.url)].pop(0)
        return httpx.Response(code, headers={"Retry-After": "0"} if code == 429 else {})

    world = World(answer)
    closing.append(world)
    spec = hooks("http://a.test/x", "http://b.test/y")
    world.notifier.submit(note(0), spec, INVOLVED)
    world.notifier.submit(note(1), spec, INVOLVED)
    await world.settle()
    assert world.ids("http://a.test/x") == ["churn.0000"] * 3 + ["churn.0001"]
    assert world.ids("http://b.test/y") == ["churn.0000", "churn.0001"]
    assert world.warnings == []


async def test_the_retry_delay_doubles_with_jitter_and_honours_retry_after(closing: list[World]) -> None:
    world = World(ok, notify_retry_initial_s=1, notify_retry_max_s=8)
    closing.append(world)
    notifier = world.notifier
    delays = [notifier._delay(attempt, None) for attempt in (1, 2, 3, 4, 5, 6)]
    for delay, ceiling in zip(delays, (1, 2, 4, 8, 8, 8), strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert notifier._delay(1, 30.0) == 30.0


async def test_a_refusal_is_given_up_at_once_and_said_once_per_streak(closing: list[World]) -> None:
    codes = [400, 400, 200, 403]

    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(codes.pop(0), text="bad payload")

    world = World(answer)
    closing.append(world)
    secret_url = "http://a.test/hooks/T0000/B0000/s3cretpath"
    spec = hooks(secret_url)
    for n in range(4):
        world.notifier.submit(note(n), spec, INVOLVED)
    await world.settle()
    assert len(world.received) == 4, "a 4xx is not retried"
    # Two streaks: 400, 400 (one event), then a success, then 403 (a second event).
    assert [reason for reason, _ in world.warnings] == ["NotificationFailed", "NotificationFailed"]
    first = world.warnings[0][1]
    assert "webhook h0" in first
    assert "HTTP 400: bad payload" in first
    assert "churn.0000" in first
    assert "s3cretpath" not in first
    assert "a.test" not in first


async def test_a_receiver_that_never_answers_well_is_given_up_after_max_attempts(closing: list[World]) -> None:
    world = World(lambda _r: httpx.Response(503, text="down"), notify_max_attempts=3)
    closing.append(world)
    world.notifier.submit(note(0), hooks("http://a.test/x"), INVOLVED)
    await world.settle()
    assert len(world.received) == 3
    [(_reason, message)] = world.warnings
    assert "after 3 attempt(s): HTTP 503: down" in message


async def test_urls_and_tokens_come_from_secrets_read_by_the_worker_and_a_missing_one_is_said_clearly(
    closing: list[World],
) -> None:
    world = World(ok)
    closing.append(world)
    spec = NotificationsSpec.model_validate({"webhooks": [{
        "name": "chat", "urlSecret": {"name": "hooks", "key": "chat"},
        "bearerTokenSecret": {"name": "hooks", "key": "token"},
    }]})  # fmt: skip
    world.notifier.submit(note(0), spec, INVOLVED)
    await world.settle()
    assert world.received == []
    [(reason, message)] = world.warnings
    assert reason == "NotificationFailed"
    assert "spec.notifications.webhooks[0].urlSecret: Secret 'hooks' has no key 'chat'; create it" in message
    world.secrets.update({("ml", "hooks", "chat"): "http://chat.test/in", ("ml", "hooks", "token"): "t0k"})
    world.notifier.submit(note(1), spec, INVOLVED)
    await world.settle()
    [(url, body, headers)] = world.received
    assert (url, body["id"], headers["Authorization"]) == ("http://chat.test/in", "churn.0001", "Bearer t0k")


async def test_operator_defaults_are_sent_with_their_inline_token_in_their_format(closing: list[World]) -> None:
    world = World(ok, default_webhooks=[DefaultWebhook(name="ops", url="http://ops.test/", format="slack",
                                                       bearer_token="abc")])  # fmt: skip
    closing.append(world)
    assert world.notifier.submit(note(0), None, INVOLVED) == 1
    assert world.notifier.submit(note(1), NotificationsSpec(operator_defaults=False), INVOLVED) == 0
    await world.settle()
    [(_url, body, headers)] = world.received
    assert headers["Authorization"] == "Bearer abc"
    assert body["text"].startswith("ml/churn: Reason0")


async def test_submit_after_close_queues_nothing(closing: list[World]) -> None:
    world = World(ok)
    await world.notifier.close()
    assert world.notifier.submit(note(0), hooks("http://a.test/x"), INVOLVED) == 0
    await world.client.aclose()
