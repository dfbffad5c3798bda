"""Delivery of rollout notifications in the background (the only I/O of `notify`).

A pass hands a decided event's notification to `Notifier.submit`, which only queues it: no await, no Secret read, so
a pass is never held up by a receiver. Each webhook has a lane: a FIFO queue and one worker, so a slow or down
receiver delays only its own later notifications (they keep their order) and never another webhook's. A worker
resolves the webhook's URL and token from Secrets, POSTs, and retries what is worth retrying (no answer, a 5xx, a
429) with exponential backoff and jitter, at least the receiver's Retry-After, until `notify_max_attempts` or
`notify_max_age_s`; then it gives up, logs, and once per webhook per ModelDeployment per failure streak posts a
Warning event NotificationFailed with the receiver's answer (never the URL: it may be the secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from modelrollout.api.base import duration_seconds
from modelrollout.api.notifications import NotificationsSpec
from modelrollout.logs import ref
from modelrollout.notify.bodies import Notification, render
from modelrollout.notify.kinds import LaneKey, Route, routes
from modelrollout.settings import DefaultWebhook, NotificationSettings
from modelrollout.telemetry import NOTIFICATION_ATTEMPTS, NOTIFICATION_QUEUE, NOTIFICATIONS
from modelrollout.webhook import Answer, Resolved, WebhookConfigError, post_json, resolve

logger = logging.getLogger(__name__)
# (namespace, Secret name, key) -> the value, None when the Secret or key does not exist.
ReadSecret = Callable[[str, str, str], Awaitable[str | None]]
# (the ModelDeployment as an involved object, reason, message): a Warning event on it.
PostWarning = Callable[[Mapping[str, Any], str, str], Awaitable[None]]
# A lane with nothing to send for this long lets its worker end (a deleted ModelDeployment's lanes go away).
IDLE_S = 60.0


@dataclass(frozen=True)
class Delivery:
    route: Route
    notification: Notification
    involved: Mapping[str, Any]  # apiVersion, kind and metadata {namespace, name, uid} of the ModelDeployment
    queued_at: float  # on the notifier's clock


@dataclass
class _Lane:
    queue: deque[Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None


class Notifier:
    """Queues notifications per webhook and delivers them in the background; `close` stops every worker."""

    def __init__(
        self,
        settings: NotificationSettings,
        *,
        read_secret: ReadSecret,
        post_warning: PostWarning,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._read_secret = read_secret
        self._post_warning = post_warning
        self._client = client or httpx.AsyncClient()
        self._own_client = client is None
        self._clock = clock
        self._rng = rng or random.Random()
        self._lanes: dict[LaneKey, _Lane] = {}
        self._seen: OrderedDict[tuple[LaneKey, str, str], None] = OrderedDict()
        self._failing: set[tuple[LaneKey, str, str]] = set()  # (lane, namespace, name) in a failure streak
        self._closed = False

    @property
    def defaults(self) -> list[DefaultWebhook]:
        return self._settings.default_webhooks

    def submit(self, notification: Notification, spec: NotificationsSpec | None, involved: Mapping[str, Any]) -> int:
        """Queue `notification` for every webhook that wants its kinds; returns how many. Never waits."""
        if self._closed:
            return 0
        subject = notification.model_deployment
        queued = 0
        for route in routes(subject.namespace, subject.name, spec, self.defaults, frozenset(notification.kinds)):
            seen = (route.lane, subject.namespace, notification.id)
            if seen in self._seen:
                NOTIFICATIONS.labels(route.source, route.format, "duplicate").inc()
                continue
            self._remember(seen)
            self._enqueue(Delivery(route, notification, involved, self._clock()))
            queued += 1
        return queued

    def pending(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    async def close(self) -> None:
        """Stop delivering: what is still queued is lost (logged), as the events it tells of stay in the cluster."""
        self._closed = True
        left = self.pending()
        if left:
            logger.warning("stopping with %d notification(s) not delivered", left)
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for lane in self._lanes.values():
            for delivery in lane.queue:
                NOTIFICATION_QUEUE.labels(delivery.route.source).dec()
        self._lanes.clear()
        if self._own_client:
            await self._client.aclose()

    # --- queues -------------------------------------------------------------------------------------------------

    def _remember(self, seen: tuple[LaneKey, str, str]) -> None:
        self._seen[seen] = None
        while len(self._seen) > self._settings.notify_dedupe_limit:
            self._seen.popitem(last=False)

    def _enqueue(self, delivery: Delivery) -> None:
        route = delivery.route
        lane = self._lanes.get(route.lane)
        if lane is None:
            lane = self._lanes[route.lane] = _Lane()
        if len(lane.queue) >= self._settings.notify_queue_limit:
            dropped = lane.queue.popleft()
            NOTIFICATION_QUEUE.labels(route.source).dec()
            NOTIFICATIONS.labels(route.source, route.format, "dropped").inc()
            logger.warning("webhook %s: queue full (%d); dropped notification %s (%s)", route.at,
                           self._settings.notify_queue_limit, dropped.notification.id, dropped.notification.reason,
                           extra=ref(dropped.notification.model_deployment.namespace,
                                     dropped.notification.model_deployment.name))  # fmt: skip
        lane.queue.append(delivery)
        NOTIFICATION_QUEUE.labels(route.source).inc()
        lane.wake.set()
        if lane.worker is None or lane.worker.done():
            lane.worker = asyncio.create_task(self._work(route.lane, lane), name=f"notify-{'-'.join(route.lane)}")

    async def _work(self, key: LaneKey, lane: _Lane) -> None:
        while not self._closed:
            if not lane.queue:
                lane.wake.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that lands as the wait ends, and
                # close() would then wait out a whole idle period.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_S):
                        await lane.wake.wait()
                if not lane.queue and self._lanes.get(key) is lane:
                    del self._lanes[key]  # submit makes a new lane and worker for the next one
                    return
                continue
            delivery = lane.queue.popleft()
            NOTIFICATION_QUEUE.labels(delivery.route.source).dec()
            try:
                await self._deliver(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("delivering notification %s failed", delivery.notification.id)

    # --- one delivery -------------------------------------------------------------------------------------------

    async def _deliver(self, delivery: Delivery) -> None:
        route, n = delivery.route, delivery.notification
        settings = self._settings
        deadline = delivery.queued_at + settings.notify_max_age_s
        attempts = 0
        resolved: Resolved | None = None
        while True:
            answer: Answer
            if resolved is None:
                try:
                    resolved = await self._resolve(route)
                except WebhookConfigError as exc:
                    # Not retried: the spec or a Secret must change, and the event says which.
                    await self._given_up(delivery, f"cannot be called: {exc}", attempts)
                    return
                except Exception as exc:  # noqa: BLE001 - the Secret read failed (API server, network): retried
                    answer = Answer(ok=False, status=None, detail=f"reading its Secret failed: {exc}", retryable=True)
            if resolved is not None:
                headers = {"Idempotency-Key": n.id}
                answer = await post_json(self._client, resolved, render(route.format, n), headers=headers)
                attempts += 1
                result = "ok" if answer.ok else "retry" if answer.retryable else "refused"
                NOTIFICATION_ATTEMPTS.labels(route.source, route.format, result).inc()
                if answer.ok:
                    self._sent(delivery)
                    return
            delay = self._delay(attempts, answer.retry_after_s)
            said = _describe(answer, resolved)
            if not answer.retryable or attempts >= settings.notify_max_attempts or self._clock() + delay > deadline:
                await self._given_up(delivery, said, attempts)
                return
            logger.info("webhook %s: notification %s not delivered (%s); retrying in %.1fs", route.at, n.id, said,
                        delay, extra=ref(n.model_deployment.namespace, n.model_deployment.name))  # fmt: skip
            await asyncio.sleep(delay)

    async def _resolve(self, route: Route) -> Resolved:
        target = route.target
        if isinstance(target, DefaultWebhook):
            headers = {"Content-Type": "application/json"}
            if target.bearer_token:
                headers["Authorization"] = f"Bearer {target.bearer_token}"
            return Resolved(url=target.url, headers=headers, timeout_s=duration_seconds(target.timeout))
        namespace = route.namespace

        async def read(name: str, key: str) -> str | None:
            return await self._read_secret(namespace, name, key)

        return await resolve(target, read, at=route.at)

    def _delay(self, attempts: int, retry_after_s: float | None) -> float:
        """Exponential, with full jitter over its upper half (receivers that failed together do not retry
        together), never below what the receiver asked for."""
        settings = self._settings
        ceiling = min(settings.notify_retry_max_s, settings.notify_retry_initial_s * 2.0 ** max(attempts - 1, 0))
        delay = ceiling * self._rng.uniform(0.5, 1.0)
        return max(delay, retry_after_s) if retry_after_s is not None else delay

    def _sent(self, delivery: Delivery) -> None:
        route, subject = delivery.route, delivery.notification.model_deployment
        NOTIFICATIONS.labels(route.source, route.format, "sent").inc()
        self._failing.discard((route.lane, subject.namespace, subject.name))

    async def _given_up(self, delivery: Delivery, said: str, attempts: int) -> None:
        route, n = delivery.route, delivery.notification
        subject = n.model_deployment
        NOTIFICATIONS.labels(route.source, route.format, "failed").inc()
        tried = f" after {attempts} attempt(s)" if attempts else ""
        message = (
            f"webhook {route.name} ({'a default of the operator' if route.source == 'operator' else route.at}, "
            f"format {route.format}): notification {n.id} ({n.reason}, {', '.join(n.kinds)}) not delivered{tried}: "
            f"{said}"
        )
        logger.warning("%s/%s %s", subject.namespace, subject.name, message, extra=ref(subject.namespace, subject.name))
        streak = (route.lane, subject.namespace, subject.name)
        if streak in self._failing:
            return  # said once per streak; the log has each
        self._failing.add(streak)
        try:
            await self._post_warning(delivery.involved, "NotificationFailed", message + "; later ones are still sent")
        except Exception:
            logger.exception("could not post NotificationFailed on %s/%s", subject.namespace, subject.name)


def _describe(answer: Answer, resolved: Resolved | None) -> str:
    """The receiver's answer without the URL (an error text may quote it, and it may be the secret)."""
    said = f"HTTP {answer.status}: {answer.detail}" if answer.status is not None else answer.detail
    if resolved is not None and resolved.url in said:
        said = said.replace(resolved.url, resolved.where())
    return said or "no detail"
