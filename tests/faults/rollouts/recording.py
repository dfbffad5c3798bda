"""Every version of one object, as the API server's watch hands them out: the fault tests' witness.

Polling would miss a version that lived a few milliseconds (a routing document the operator wrote and replaced
within one pass); a watch from the list's resourceVersion sees each write once, in order. A watch that ends
(its timeout) goes on from the last resourceVersion seen; one the API server refuses (410 Gone: the version was
compacted) lists again, and that gap is counted, so a test can refuse to conclude from an incomplete history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client, watch

log = logging.getLogger(__name__)
WATCH_TIMEOUT_S = 60
ListCall = Callable[..., Awaitable[Any]]
OnVersion = Callable[["Version"], None]


@dataclass(frozen=True)
class Version:
    """One stored version of the object (`obj` None: it was deleted), and when the watch delivered it."""

    at: float
    resource_version: str
    obj: dict[str, Any] | None

    @property
    def status(self) -> dict[str, Any]:
        return dict((self.obj or {}).get("status") or {})

    @property
    def metadata(self) -> dict[str, Any]:
        return dict((self.obj or {}).get("metadata") or {})


@dataclass
class ObjectHistory:
    """Records one named object of `list_call` (a namespaced list function of kubernetes_asyncio, with `args`
    before the keyword arguments). `on_version` is called for each new version, on the event loop, as it
    arrives (a fault test kills a process there)."""

    list_call: ListCall
    args: tuple[Any, ...]
    name: str
    on_version: OnVersion | None = None
    versions: list[Version] = field(default_factory=list)
    gaps: int = 0  # watches refused from the last version seen (410): versions may be missing there
    _task: asyncio.Task[None] | None = None
    _synced: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> ObjectHistory:
        """Returns once the object's current state (or its absence) is recorded: every later write is seen."""
        self._task = asyncio.create_task(self._run(), name=f"record-{self.name}")
        await asyncio.wait_for(self._synced.wait(), 30)
        return self

    async def stop(self) -> list[Version]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return self.versions

    def _record(self, obj: dict[str, Any] | None, resource_version: str) -> None:
        if self.versions and self.versions[-1].resource_version == resource_version:
            return  # the same version again (a re-list after a gap)
        version = Version(time.time(), resource_version, obj)
        self.versions.append(version)
        if self.on_version is not None:
            self.on_version(version)

    async def _list(self) -> str:
        selector = f"metadata.name={self.name}"
        response = await self.list_call(*self.args, field_selector=selector, _preload_content=False)
        listed = json.loads(await response.read())
        items = listed.get("items") or []
        if items:
            self._record(items[0], items[0]["metadata"]["resourceVersion"])
        self._synced.set()
        return str(listed["metadata"]["resourceVersion"])

    async def _run(self) -> None:
        resource_version = await self._list()
        while True:
            try:
                async with watch.Watch() as stream:
                    async for event in stream.stream(
                        self.list_call,
                        *self.args,
                        field_selector=f"metadata.name={self.name}",
                        resource_version=resource_version,
                        timeout_seconds=WATCH_TIMEOUT_S,
                    ):
                        raw = event["raw_object"]
                        resource_version = raw["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._record(raw, resource_version)
                        elif event["type"] == "DELETED":
                            self._record(None, resource_version)
            except asyncio.CancelledError:
                raise
            except client.ApiException as exc:
                if exc.status != 410:
                    raise
                self.gaps += 1
                log.warning("watch of %s: %s; listing again (versions in between are lost)", self.name, exc)
                resource_version = await self._list()
