"""Where the operator's documents come from: a ConfigMap (watched) or a local file (polled). The router reads its
routing document so, and a stream consumer its share document (modelserver.stream.coordination).

Both run as one background task for the reader's lifetime, hand every document they see to the sink's apply
(Routing.apply) and report a missing document to its missing; neither ever stops on an error, they retry.

The ConfigMap source lists the one object (fieldSelector metadata.name=NAME) and then watches from the list's
resourceVersion, so a change reaches the router as soon as the API server sends the event (well under a second
on a healthy cluster). A watch that expires is followed by a fresh list (cheap for one object, and it catches
anything a broken connection may have missed); a 410 Gone does the same at once; any other failure reconnects
after a backoff of 0.5 s doubling to 10 s, reset by the next successful list.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

from modelrollout_contract.router import CONFIG_KEY

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
HTTP_GONE = 410


class Sink(Protocol):
    """What takes the documents a source reads (the router's Routing, a consumer's share document)."""

    def apply(self, text: str | bytes, *, origin: str) -> str: ...

    def missing(self, reason: str, *, origin: str) -> None: ...


class Source(Protocol):
    async def run(self, routing: Sink) -> None:
        """Feed documents to `routing` until cancelled."""
        ...


class Backoff:
    def __init__(self, first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> None:
        self._first = first
        self._most = most
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._most)
        return delay


FileState = tuple[int, int, int]


def _file_state(path: Path) -> FileState | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class FileSource:
    """Polls a file's mtime, size and inode (a rename over it counts) every `interval_s`. Write the file
    atomically (write a temp file, rename it over); a reader that catches a half-written file refuses it
    and takes the complete one on the next change."""

    def __init__(self, path: Path, *, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s

    async def run(self, routing: Sink) -> None:
        seen: FileState | None = None
        reported_missing = False
        origin = f"file {self.path}"
        while True:
            try:
                state = _file_state(self.path)
                if state is None:
                    if not reported_missing:
                        routing.missing("the file does not exist", origin=origin)
                        reported_missing = True
                    seen = None
                elif state != seen:
                    seen = state
                    reported_missing = False
                    text = _read(self.path)
                    if text is not None:
                        routing.apply(text, origin=origin)
            except OSError as exc:
                log.warning("cannot read %s: %s", self.path, exc)
            await asyncio.sleep(self.interval_s)


class ConfigMapSource:
    """List + watch of one ConfigMap through the Kubernetes API (kubernetes_asyncio)."""

    def __init__(
        self, namespace: str, name: str, *, kubeconfig: Path | None, watch_timeout_s: int, key: str = CONFIG_KEY
    ) -> None:
        self.namespace = namespace
        self.key = key
        self.name = name
        self.kubeconfig = kubeconfig
        self.watch_timeout_s = watch_timeout_s
        self.origin = f"configmap {namespace}/{name}"

    async def _connect(self) -> Any:
        """An ApiClient: the --kubeconfig file when given, else in-cluster credentials, else KUBECONFIG or
        ~/.kube/config."""
        from kubernetes_asyncio import client, config  # noqa: PLC0415 - only `--configmap` needs the client

        configuration = client.Configuration()
        if self.kubeconfig is not None:
            await config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                await config.load_kube_config(client_configuration=configuration)
        return client.ApiClient(configuration)

    async def run(self, routing: Sink) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException  # noqa: PLC0415

        backoff = Backoff()
        api: Any = None
        try:
            while True:
                try:
                    if api is None:
                        api = await self._connect()
                    core = _core(api)
                    version = await self._list(core, routing)
                    backoff.reset()
                    await self._watch(core, routing, version)
                    log.debug("watch of %s ended after its %ss; listing again", self.origin, self.watch_timeout_s)
                except ApiException as exc:
                    if exc.status == HTTP_GONE:
                        log.info("watch of %s expired (410 Gone); listing again", self.origin)
                        continue
                    delay = backoff.next()
                    log.warning("%s: API error %s %s; retrying in %.1fs", self.origin, exc.status, exc.reason, delay)
                    await asyncio.sleep(delay)
                except Exception as exc:  # noqa: BLE001 - connection, credentials, anything: retry, never stop
                    delay = backoff.next()
                    log.warning("%s: %s: %s; retrying in %.1fs", self.origin, type(exc).__name__, exc, delay)
                    await asyncio.sleep(delay)
        finally:
            if api is not None:
                await api.close()

    def _field_selector(self) -> str:
        return f"metadata.name={self.name}"

    async def _list(self, core: Any, routing: Sink) -> str:
        result = await core.list_namespaced_config_map(
            self.namespace, field_selector=self._field_selector(), _request_timeout=30
        )
        if result.items:
            self._seen(result.items[0].data, routing)
        else:
            routing.missing("the ConfigMap does not exist", origin=self.origin)
        version: str = result.metadata.resource_version
        return version

    async def _watch(self, core: Any, routing: Sink, resource_version: str) -> None:
        from kubernetes_asyncio import watch  # noqa: PLC0415

        async with watch.Watch() as stream:
            events = stream.stream(
                core.list_namespaced_config_map,
                self.namespace,
                field_selector=self._field_selector(),
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_timeout_s,
                _request_timeout=self.watch_timeout_s + 30,
            )
            async for event in events:
                kind = event["type"]
                if kind in {"ADDED", "MODIFIED"}:
                    self._seen(event["object"].data, routing)
                elif kind == "DELETED":
                    routing.missing("the ConfigMap was deleted", origin=self.origin)

    def _seen(self, data: dict[str, str] | None, routing: Sink) -> None:
        text = (data or {}).get(self.key)
        if text is None:
            routing.missing(f"the ConfigMap has no {self.key} key", origin=self.origin)
        else:
            routing.apply(text, origin=self.origin)


def _core(api: Any) -> Any:
    from kubernetes_asyncio import client  # noqa: PLC0415

    return client.CoreV1Api(api)
