"""Thin Kopf wiring: events and timers of ModelDeployments and their children -> the Reconciler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from modelrollout import cleanup as routing_cleanup
from modelrollout.api.resource import GROUP, PLURAL, VERSION
from modelrollout.kube.client import Guard, KubeClient
from modelrollout.logs import ref
from modelrollout.modes import watched_kinds
from modelrollout.planning.names import LABEL_NAME, MANAGED_BY
from modelrollout.reconciler import Reconciler
from modelrollout.rollout.verbs import VERB_ANNOTATION
from modelrollout.settings import OperatorSettings

RESOURCE = (GROUP, VERSION, PLURAL)
logger = logging.getLogger(__name__)
# Children whose changes are events for their owner (drift, pods turning ready): the modes' watched kinds.
CHILDREN = tuple((kind.group, kind.version, kind.plural) for kind in watched_kinds())


async def resync_forever(kube: KubeClient, reconciler: Reconciler, settings: OperatorSettings) -> None:
    """Every interval, reconcile every watched ModelDeployment: undoes drift that no event reported, and moves a
    waiting revision on once it is available."""
    while True:
        await asyncio.sleep(settings.watching.reconcile_interval_s)
        try:
            found = await kube.list_model_deployments(settings.watching.namespaces)
        except Exception:
            logger.exception("resync: listing ModelDeployments failed; retrying next interval")
            continue
        for body in found:
            try:
                await reconciler.reconcile(body)
            except Exception:
                # One broken object must not stop the others from being corrected.
                meta = body.get("metadata", {})
                logger.exception(
                    "resync of %s/%s failed",
                    meta.get("namespace"),
                    meta.get("name"),
                    extra=ref(meta.get("namespace"), meta.get("name")),
                )


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

    # Drift correction and status refresh run as one operator-wide loop, not a Kopf timer: Kopf puts a finalizer
    # on every object with a timer, and a finalizer would make deleting a ModelDeployment (or its namespace)
    # hang whenever the operator is not running. Owner references already clean the children up.
    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Our own API group for everything Kopf stores on our objects; nothing in `status` but our status.
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # our Reconciler emits the decision events itself
        kube = await KubeClient.connect(
            field_manager=op.applying.field_manager, kubeconfig=kubeconfig, instance=instance, guard=guard
        )
        state["kube"] = kube
        state["reconciler"] = Reconciler(kube, op)
        state["resync"] = asyncio.create_task(resync_forever(kube, state["reconciler"], op), name="modelrollout-resync")
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
        if "reconciler" in state:
            await state["reconciler"].close()
        if "kube" in state:
            await state["kube"].close()

    @kopf.on.resume(*RESOURCE, registry=registry)
    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    async def changed(body: kopf.Body, **_: Any) -> None:
        await state["reconciler"].reconcile(body)

    # A user verb (kubectl modelrollout promote|abort|...) arrives as an annotation: act on it at once.
    @kopf.on.event(*RESOURCE, annotations={VERB_ANNOTATION: kopf.PRESENT}, registry=registry)
    async def verb(body: kopf.Body, type: str | None, **_: Any) -> None:
        if type != "DELETED":
            await state["reconciler"].reconcile(body)

    # A deleted ModelDeployment's additions to the user's routing objects go at once (without a finalizer; what
    # this misses, the sweep above finds).
    @kopf.on.event(*RESOURCE, when=lambda type, **_: type == "DELETED", registry=registry)
    async def deleted(body: kopf.Body, **_: Any) -> None:
        # A pass for it first: that waits for one in flight (which read it before it went and may still write its
        # routing) and finds it gone; every later pass finds it gone too, so nothing writes what forget removes.
        await state["reconciler"].reconcile(body)
        await routing_cleanup.forget(state["kube"], dict(body))

    for group, version, plural in CHILDREN:

        @kopf.on.event(group, version, plural, labels={LABEL_NAME: kopf.PRESENT, **MANAGED_BY}, registry=registry)
        async def child_event(body: kopf.Body, **_: Any) -> None:
            await state["reconciler"].reconcile_owner_of(body)

    return registry
