"""One kind's objects kept current by LIST then WATCH (client-go's reflector): the first list fills the index,
the watch applies every change after it, a watch the server ends is resumed from the last version seen (bookmarks
keep that version fresh on a quiet kind), and one whose version is too old (410 Gone: an API server restart, a
long outage) lists again, telling the listener what changed meanwhile. A failed connection is retried with a
growing delay; a kind the API server does not serve (a CRD not installed) is looked for again every
`ABSENT_RETRY_S` and is empty until then."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from modelrollout.kube.client import KubeClient
from modelrollout.kube.index import Change, ObjectIndex
from modelrollout.telemetry import WATCH_RESTARTS

logger = logging.getLogger(__name__)
HTTP_NOT_FOUND, HTTP_GONE = 404, 410
ABSENT_RETRY_S = 10.0
RETRY_INITIAL_S, RETRY_MAX_S = 0.5, 15.0
# The server ends each watch after 4-5 minutes (client-go's 5-10, shortened: a silent dead connection is noticed
# within that plus the client's margin).
WATCH_TIMEOUT_S = (240, 300)
# (kind, change, initial): `initial` is the first list after start-up, which the listener may treat as a resume.
Listener = Callable[[str, Change, bool], None]


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class Informer:
    def __init__(
        self,
        kube: KubeClient,
        index: ObjectIndex,
        listener: Listener,
        *,
        namespace: str | None,
        selector: str | None,
        rng: random.Random | None = None,
    ) -> None:
        self._kube = kube
        self._index = index
        self._listener = listener
        self._namespace = namespace
        self._selector = selector
        self._rng = rng or random.Random()
        self.synced = asyncio.Event()  # set after the first list (or once the kind is known to be absent)
        self.absent = False

    @property
    def kind(self) -> str:
        return self._index.kind

    async def run(self) -> None:
        initial, failures = True, 0
        while True:
            try:
                resource_version = await self._list(initial=initial)
                initial, failures = False, 0
                while True:
                    resource_version = await self._watch(resource_version)
                    WATCH_RESTARTS.labels(self.kind, "timeout").inc()
            except Gone:
                WATCH_RESTARTS.labels(self.kind, "gone").inc()
                logger.info("watch of %s: version too old; listing again", self._where())
            except _Absent:
                self.absent = True
                self.synced.set()
                await asyncio.sleep(ABSENT_RETRY_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - refused/reset, silent, a 5xx: retry, never stop
                failures += 1
                WATCH_RESTARTS.labels(self.kind, "error").inc()
                delay = min(RETRY_INITIAL_S * 2 ** (failures - 1), RETRY_MAX_S) * self._rng.uniform(0.8, 1.2)
                logger.warning("watch of %s failed (%s: %s); listing again in %.1fs", self._where(),
                               type(exc).__name__, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)

    async def _list(self, *, initial: bool) -> str:
        try:
            items, resource_version = await self._kube.list_all(self.kind, self._namespace, selector=self._selector)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                raise _Absent from exc
            raise
        changes = self._index.replace(items, namespace=self._namespace)
        if self.absent:
            logger.info("%s is served now; watching it", self._where())
        self.absent = False
        self.synced.set()
        for change in changes:
            self._listener(self.kind, change, initial)
        return resource_version

    async def _watch(self, resource_version: str) -> str:
        """One watch, to its end; the version to resume from."""
        timeout = self._rng.randint(*WATCH_TIMEOUT_S)
        try:
            events = self._kube.watch(self.kind, self._namespace, resource_version=resource_version,
                                      selector=self._selector, timeout_s=timeout)  # fmt: skip
            async for type_, obj in events:
                resource_version = self._handle(type_, obj) or resource_version
        except ApiException as exc:
            if exc.status == HTTP_GONE:
                raise Gone from exc
            raise
        return resource_version

    def _handle(self, type_: str, obj: dict[str, Any]) -> str | None:
        version = obj.get("metadata", {}).get("resourceVersion")
        if type_ == "ERROR":
            if obj.get("code") == HTTP_GONE:
                raise Gone
            raise RuntimeError(f"watch error: {obj.get('message') or obj}")
        if type_ == "BOOKMARK":
            return str(version) if version else None
        change = self._index.delete(obj) if type_ == "DELETED" else self._index.upsert(obj)
        if change is not None:
            self._listener(self.kind, change, False)
        return str(version) if version else None

    def _where(self) -> str:
        return f"{self.kind} in {self._namespace or 'all namespaces'}"


class _Absent(Exception):
    """The API server does not serve this kind."""
