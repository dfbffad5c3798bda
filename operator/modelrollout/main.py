"""`modelrollout` command: `modelrollout run` starts the operator; `modelrollout crd` prints the CRD."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import kopf
import typer

from modelrollout.settings import OperatorSettings
from modelrollout.telemetry import serve

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ModelRollout operator.")


@app.command()
def run(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Namespace to watch (repeat); all when omitted.")
    ] = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig file; in-cluster or KUBECONFIG otherwise.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator until SIGINT/SIGTERM. Settings: MODELROLLOUT_* environment variables."""
    from modelrollout.handlers import register  # noqa: PLC0415 - keeps `modelrollout crd` free of kopf start-up

    settings = OperatorSettings()
    if namespace:  # flags win over the environment
        watching = settings.watching.model_copy(update={"namespaces": namespace})
        settings = settings.model_copy(update={"watching": watching})
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    registry = register(settings, kubeconfig=kubeconfig)
    serve(settings.endpoints.metrics_port)
    port = settings.endpoints.liveness_port
    liveness = f"http://0.0.0.0:{port}/healthz" if port else None
    asyncio.run(
        kopf.operator(
            registry=registry,
            namespaces=settings.watching.namespaces,
            clusterwide=not settings.watching.namespaces,
            standalone=True,
            liveness_endpoint=liveness,
        )
    )


@app.command()
def crd() -> None:
    """Print the ModelDeployment CustomResourceDefinition (what `make crds` writes to crds/)."""
    from modelrollout.api.crd import render_crd_yaml  # noqa: PLC0415

    sys.stdout.write(render_crd_yaml())


if __name__ == "__main__":
    app()
