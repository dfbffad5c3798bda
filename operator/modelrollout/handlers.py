"""Thin wiring: Kopf runs the process; changes seen by our watches and the resync -> passes of the Reconciler."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any

import kopf

from modelrollout import cleanup as routing_cleanup
from modelrollout.api.resource import KIND
from modelrollout.kube.children import POD, WatchedCluster
from modelrollout.kube.client import Guard, KubeClient
from modelrollout.kube.index import Change
from modelrollout.kube.kinds import SCALED_OBJECT
from modelrollout.kube.throttle import TokenBucket
from modelrollout.logs import ref
from modelrollout.modes import owned_kinds, watched_kinds
from modelrollout.notify.sender import Notifier
from modelrollout.reconciler import Reconciler
from modelrollout.settings import OperatorSettings
from modelrollout.telemetry import PASS_TRIGGERS

logger = logging.getLogger(__name__)
# Kinds whose every change (status included) may move a rollout on: a Deployment turning available, a Job ending.
WATCHED = frozenset(kind.name for kind in watched_kinds())
# Every kind a pass reads: what the modes own (a Job of a CronJob's is labelled like its CronJob) and the stream
# mode's ScaledObjects (a kind KEDA serves, when installed), watched by label.
CHILD_KINDS = (*(owned.kind.name for owned in owned_kinds()), SCALED_OBJECT.name)


def triggers_pass(kind: str, change: Change, initial: bool) -> tuple[str, str] | None:
    """The ModelDeployment (namespace, name) whose pass a change asks for, if any.

    - a ModelDeployment: any change but one of status alone (status is ours; our own writes never reach here,
      the index drops their echo), including the first list at start-up (a resume);
    - a child it labels: any change of a watched kind; of another kind, a deletion or an edit beyond status (a
      hand edit to undo); never the first list (the ModelDeployments' own resume covers it);
    - pods: never (a Deployment's status says what its pods do)."""
    if kind == KIND:
        if change.type == "deleted" or change.only_status():
            return None
        return change.namespace, change.name
    if initial or kind == POD or change.owner is None:
        return None
    if kind in WATCHED or change.type == "deleted" or not change.only_status():
        return change.namespace, change.owner
    return None


def resync_delays(count: int, interval_s: float, rng: random.Random) -> list[float]:
    """The waits before each of `count` resync passes of one round: spread evenly over the interval (no burst of a
    whole fleet at once), each gap jittered by up to 20 % (no fixed phase shared with other periodic work)."""
    if count == 0:
        return []
    gap = interval_s / count
    return [gap * rng.uniform(0.8, 1.2) for _ in range(count)]


class Passes:
    """Starts passes in the background (a watch callback must not wait for one) and keeps them referenced."""

    def __init__(self, reconciler: Reconciler, cluster: WatchedCluster, kube: KubeClient) -> None:
        self._reconciler = reconciler
        self._cluster = cluster
        self._kube = kube
        self._running: set[asyncio.Task[None]] = set()

    def start(self, namespace: str, name: str) -> None:
        task = asyncio.create_task(self._run(namespace, name), name=f"pass-{namespace}-{name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def start_graphs(self, namespace: str, name: str) -> None:
        """A pass of each serving graph ModelDeployment `name` is a member of: its new status (a promotion, a
        rollback) is theirs to show and route by."""
        for key in self._cluster.graphs_naming(namespace, name):
            PASS_TRIGGERS.labels("graph").inc()
            self.start(*key)

    async def _run(self, namespace: str, name: str) -> None:
        await self._cluster.synced()  # a pass before every kind is listed would take missing children for gone
        try:
            await self._reconciler.reconcile({"metadata": {"namespace": namespace, "name": name}})
        except Exception:
            logger.exception("pass of %s/%s failed", namespace, name, extra=ref(namespace, name))

    def forget(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """A deleted ModelDeployment: what it added to the user's routing objects goes (no finalizer: what this
        misses while the operator is down, the sweep finds), and the serving graphs it was a member of say so."""
        task = asyncio.create_task(self._forget(namespace, name, body), name=f"forget-{namespace}-{name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        self.start_graphs(namespace, name)

    async def _forget(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        try:
            # First wait for a pass in flight (it read the object before it went and may still write its routing);
            # every pass after finds it gone, so nothing writes again what forget removes.
            await self._reconciler.settle((namespace, name))
            await routing_cleanup.forget(self._kube, body)
        except Exception:
            logger.exception("cleanup of deleted %s/%s failed; the sweep retries it", namespace, name,
                             extra=ref(namespace, name))  # fmt: skip

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


async def resync_forever(cluster: WatchedCluster, passes: Passes, settings: OperatorSettings) -> None:
    """Every ModelDeployment gets a pass within each interval, spread over it: undoes what no event reported
    (none should be missed; this is the net under that). A pass reads memory and writes only what differs."""
    rng = random.Random()
    await cluster.synced()
    sizes = cluster.sizes()
    logger.info("watching: every kind listed (%s); resuming %d ModelDeployments",
                ", ".join(f"{kind} {count}" for kind, count in sorted(sizes.items())), sizes[KIND])  # fmt: skip
    while True:
        keys = sorted(cluster.model_deployment_keys())
        delays = resync_delays(len(keys), settings.watching.reconcile_interval_s, rng)
        if not keys:
            await asyncio.sleep(settings.watching.reconcile_interval_s)
        for key, delay in zip(keys, delays, strict=True):
            await asyncio.sleep(delay)
            PASS_TRIGGERS.labels("resync").inc()
            passes.start(*key)


def notifier_for(kube: KubeClient, settings: OperatorSettings) -> Notifier:
    """Delivery of rollout notifications, through the same client as the passes (its leader fence, its rate
    limit): Secrets read when a webhook is called, NotificationFailed posted on the ModelDeployment."""

    async def read_secret(namespace: str, name: str, key: str) -> str | None:
        encoded = (((await kube.get("Secret", namespace, name)) or {}).get("data") or {}).get(key)
        return base64.b64decode(encoded).decode().strip() if encoded else None

    async def post_warning(involved: Mapping[str, Any], reason: str, message: str) -> None:
        await kube.emit_event(dict(involved), type_="Warning", reason=reason, message=message)

    return Notifier(settings.notifications, read_secret=read_secret, post_warning=post_warning)


def bearer_token(api_key: dict[str, str]) -> str | None:
    """The token kubernetes_asyncio loaded (kubeconfig token, in-cluster ServiceAccount), if any.

    Recent versions keep it under `BearerToken`, older ones under `authorization`; Kopf wants it bare.
    """
    raw = api_key.get("BearerToken") or api_key.get("authorization") or ""
    return raw.removeprefix("Bearer ").strip() or None


def register(
    settings: OperatorSettings,
    *,
    kubeconfig: str | None = None,
    guard: Guard | None = None,
    instance: str | None = None,
) -> kopf.OperatorRegistry:
    """Handlers for one operator run, bound to its settings. `guard` runs before every API call of the reconciler
    and the resync loop (leader election's fence); `instance` names this replica on the Events it posts."""
    registry = kopf.OperatorRegistry()
    state: dict[str, Any] = {}
    op = settings  # Kopf passes its own `settings` to activities; ours keeps another name

    # Kopf runs the process (login, start-up, clean-up, signals); the passes are driven by our own watches
    # (`kube.informer`): one label-selected watch per kind into an index, so a pass reads memory, not the API
    # server. No Kopf handler on our objects: Kopf's would add a finalizer (timers) or its bookkeeping
    # annotations (create/update handlers), and a finalizer makes deleting a ModelDeployment (or its namespace)
    # hang whenever the operator is not running. Owner references clean the children up.
    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        applying = op.applying
        kube = await KubeClient.connect(
            field_manager=applying.field_manager, kubeconfig=kubeconfig, instance=instance, guard=guard,
            limiter=TokenBucket(applying.api_qps, applying.api_burst), max_retries=applying.api_max_retries,
        )  # fmt: skip
        passes: Passes | None = None

        def changed(kind: str, change: Change, initial: bool) -> None:
            if kind == KIND and change.type == "deleted" and passes is not None:
                reconciler.forget((change.namespace, change.name))
                passes.forget(change.namespace, change.name, change.before or {})
            key = triggers_pass(kind, change, initial)
            if key is not None and passes is not None:
                PASS_TRIGGERS.labels(kind).inc()
                passes.start(*key)

        cluster = WatchedCluster(kube, CHILD_KINDS, changed, namespaces=op.watching.namespaces)
        notifier = notifier_for(kube, op)

        reconciler = Reconciler(
            kube, op, children=cluster, notifier=notifier,
            status_changed=lambda namespace, name: passes.start_graphs(namespace, name) if passes else None,
        )  # fmt: skip
        passes = Passes(reconciler, cluster, kube)
        state.update(kube=kube, cluster=cluster, reconciler=reconciler, passes=passes, notifier=notifier)
        cluster.start()
        state["resync"] = asyncio.create_task(resync_forever(cluster, passes, op), name="modelrollout-resync")
        # Additions to users' routing objects left by ModelDeployments deleted while we were not watching.
        state["sweep"] = asyncio.create_task(
            routing_cleanup.sweep_forever(kube, op.watching.namespaces), name="modelrollout-sweep"
        )

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        kube = await KubeClient.connect(field_manager=op.applying.field_manager, kubeconfig=kubeconfig)
        try:
            cfg = kube.configuration
            token = bearer_token(cfg.api_key or {})
            return kopf.ConnectionInfo(
                server=str(cfg.host),
                ca_path=cfg.ssl_ca_cert,
                insecure=not cfg.verify_ssl,
                certificate_path=cfg.cert_file,
                private_key_path=cfg.key_file,
                scheme="Bearer" if token else None,
                token=token,
            )
        finally:
            await kube.close()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in ("resync", "sweep"):
            if task in state:
                state[task].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state[task]
        if "cluster" in state:
            await state["cluster"].stop()
        if "passes" in state:
            await state["passes"].stop()
        if "reconciler" in state:
            await state["reconciler"].close()
        if "notifier" in state:
            await state["notifier"].close()
        if "kube" in state:
            await state["kube"].close()

    return registry
