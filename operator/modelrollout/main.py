"""`modelrollout` command: `modelrollout run` starts the operator; `modelrollout crd` prints the CRD.

`run` starts as a standby: it serves its probes and metrics and takes part in leader election (`leader`), and
starts Kopf, and with it every writer (the handlers, the resync loop, the wake-up timers), only once it holds
the lease. Kopf's peering is not used for this: peers of equal priority all freeze, and our resync loop and
timers run outside Kopf's freeze. Not running the machinery at all on a standby is the one arrangement where no
writer can be forgotten. A leader that loses the lease exits at once (exit code 3) and is restarted by
Kubernetes as a standby; on SIGTERM it stops Kopf, then releases the lease so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, Protocol

import kopf
import typer

from modelrollout import logs
from modelrollout.kube.client import Guard, KubeClient
from modelrollout.leader.election import Timing, identity, lease_namespace
from modelrollout.leader.elector import LeaderElector
from modelrollout.leader.lease import KubeLease
from modelrollout.probes import Probes
from modelrollout.settings import OperatorSettings
from modelrollout.telemetry import LEADER, serve

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ModelRollout operator.")
logger = logging.getLogger("modelrollout.main")

SERVICEACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
EXIT_LOST_LEASE = 3  # distinct, so that a pod's last state says why it restarted


class Register(Protocol):
    """`handlers.register`, passed in (see `run`)."""

    def __call__(
        self,
        settings: OperatorSettings,
        *,
        kubeconfig: str | None = None,
        guard: Guard | None = None,
        instance: str | None = None,
    ) -> kopf.OperatorRegistry: ...


@app.command()
def run(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Namespace to watch (repeat); all when omitted.")
    ] = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig file; in-cluster or KUBECONFIG otherwise.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator until SIGINT/SIGTERM. Settings: MODELROLLOUT_* environment variables."""
    # Imported here, not at the top, to keep `modelrollout crd` fast; and before the election, not once leading,
    # so that a standby that takes over starts Kopf at once (importing the reconciler takes seconds).
    from modelrollout.handlers import register  # noqa: PLC0415

    settings = OperatorSettings()
    if namespace:  # flags win over the environment
        watching = settings.watching.model_copy(update={"namespaces": namespace})
        settings = settings.model_copy(update={"watching": watching})
    logs.configure(settings.logging.log_format, verbose=verbose)
    election = settings.leader
    where = lease_namespace(
        explicit=election.lease_namespace,
        pod_namespace=os.environ.get("POD_NAMESPACE"),
        serviceaccount_namespace=_read(SERVICEACCOUNT_NAMESPACE),
        watched=settings.watching.namespaces,
    )
    if election.leader_election and where is None:
        logger.error(
            "leader election needs the Lease's namespace: set MODELROLLOUT_LEASE_NAMESPACE (or POD_NAMESPACE), or "
            "MODELROLLOUT_LEADER_ELECTION=false for a single replica"
        )
        raise typer.Exit(2)
    me = identity(
        explicit=election.leader_identity,
        pod_name=os.environ.get("POD_NAME"),
        hostname=socket.gethostname(),
        suffix=secrets.token_hex(4),
    )
    serve(settings.endpoints.metrics_port)
    raise typer.Exit(
        asyncio.run(operate(settings, register, kubeconfig=kubeconfig, lease_namespace=where, identity=me))
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


async def operate(
    settings: OperatorSettings,
    register: Register,
    *,
    kubeconfig: str | None,
    lease_namespace: str | None,
    identity: str,
) -> int:
    """The process's life: probes, then (with leader election) standby until leading, then Kopf until a signal;
    its exit code."""
    stop = asyncio.Event()
    _on_signals(stop.set)
    port = settings.endpoints.liveness_port
    election = settings.leader
    if not election.leader_election:
        started = asyncio.Event()
        probes = Probes(live=lambda: True, ready=started.is_set, describe=lambda: {"leaderElection": False})
        await probes.start(port)
        LEADER.set(1)
        try:
            return await _run_kopf(settings, register(settings, kubeconfig=kubeconfig), stop=stop, started=started)
        finally:
            await probes.stop()

    assert lease_namespace is not None  # `run` refused to start without one
    timing = Timing(election.lease_duration_s, election.renew_deadline_s, election.retry_period_s)
    kube = await KubeClient.connect(field_manager=settings.applying.field_manager, kubeconfig=kubeconfig)
    elector = LeaderElector(
        KubeLease(kube, namespace=lease_namespace, name=election.lease_name),
        identity=identity,
        timing=timing,
        on_lost=_exit_lost,
    )
    # A round ends within renewDeadline (its requests' timeout) plus a retry period: a loop that has not ended one
    # for much longer than that is stuck, and only a restart helps.
    stalled_s = timing.lease_duration_s + timing.renew_deadline_s

    def live() -> bool:
        return elector.last_round is None or time.monotonic() - elector.last_round < stalled_s

    def describe() -> dict[str, Any]:
        role = "leader" if elector.is_leader else "standby"
        return {
            "role": role,
            "identity": identity,
            "holder": elector.holder,
            "lease": f"{lease_namespace}/{election.lease_name}",
        }

    probes = Probes(live=live, ready=elector.read_once.is_set, describe=describe)
    await probes.start(port)
    logger.info("standby: %s takes part in electing lease %s/%s", identity, lease_namespace, election.lease_name)
    electing = asyncio.create_task(elector.run(), name="modelrollout-lease")
    try:
        await _first(elector.leading.wait(), stop.wait(), electing)
        if electing.done():
            logger.error("the lease loop ended: %r", electing.exception())
            return 1
        if not elector.is_leader:
            return 0  # stopped while standby: nothing to hand over
        registry = register(settings, kubeconfig=kubeconfig, guard=elector.check, instance=identity)
        return await _run_kopf(settings, registry, stop=stop, watch=electing)
    finally:
        electing.cancel()
        await asyncio.gather(electing, return_exceptions=True)
        await elector.release()  # after Kopf returned: no writer is left to race the successor
        await kube.close()
        await probes.stop()


async def _run_kopf(
    settings: OperatorSettings,
    registry: kopf.OperatorRegistry,
    *,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    watch: asyncio.Task[None] | None = None,
) -> int:
    """Kopf, with every writer, until `stop` (a signal), Kopf's own end, or the end of `watch` (the lease loop)."""
    halt, ready = asyncio.Event(), started or asyncio.Event()
    running = asyncio.create_task(
        kopf.operator(
            registry=registry,
            namespaces=settings.watching.namespaces,
            clusterwide=not settings.watching.namespaces,
            standalone=True,  # no Kopf peering: leader election decides who runs (see the module docstring)
            stop_flag=halt,
            ready_flag=ready,
        ),
        name="kopf",
    )
    # Kopf takes SIGINT/SIGTERM over as it starts; once it has, they are made ours again, so that a signal stops
    # Kopf through `halt` (Kopf stopped by a signal while given a stop flag waits 5 s for its own flag waiter).
    reclaim = asyncio.create_task(_reclaim_signals(ready, stop.set), name="reclaim-signals")
    await _first(running, stop.wait(), *([watch] if watch else []))
    reclaim.cancel()
    code = 0
    if watch is not None and watch.done():
        logger.error("the lease loop ended (%r): stopping", watch.exception() if not watch.cancelled() else None)
        code = 1
    halt.set()
    try:
        await running
    except Exception:
        logger.exception("Kopf failed")
        code = 1
    _on_signals(stop.set)  # ours again in any case, for the rest of the shutdown
    return code


async def _reclaim_signals(ready: asyncio.Event, callback: Callable[[], None]) -> None:
    await ready.wait()
    _on_signals(callback)


async def _first(*awaitables: Coroutine[Any, Any, Any] | asyncio.Task[Any]) -> None:
    """Until the first of these ends; the coroutines among them are cancelled, tasks are left running."""
    tasks = [a if isinstance(a, asyncio.Task) else asyncio.ensure_future(a) for a in awaitables]
    own = [t for t, a in zip(tasks, awaitables, strict=True) if t is not a]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in own:
            task.cancel()
        await asyncio.gather(*own, return_exceptions=True)


def _on_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)


def _exit_lost(reason: str) -> None:
    """The lease is lost: no writer may run one more instruction. Exit without unwinding (no cleanup handler,
    no pending write gets its turn); Kubernetes restarts the container, which comes back as a standby."""
    logger.critical("lost the lease: %s; exiting (code %d) so that no writer runs on", reason, EXIT_LOST_LEASE)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_LOST_LEASE)


@app.command()
def crd() -> None:
    """Print the ModelDeployment CustomResourceDefinition (what `make crds` writes to crds/)."""
    from modelrollout.api.crd import render_crd_yaml  # noqa: PLC0415

    sys.stdout.write(render_crd_yaml())


if __name__ == "__main__":
    app()
