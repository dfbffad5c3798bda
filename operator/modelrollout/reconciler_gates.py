"""The gates' part of a pass (spec.rollout.gates): asking a confirm gate's webhook, and reading how the preRollout
hook Jobs stand. The engine decides (rollout.gates); this is the I/O it asks for."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from modelrollout.api.resource import ModelDeployment
from modelrollout.kube.children import ClusterView
from modelrollout.logs import ref
from modelrollout.planning.hooks import hook_run
from modelrollout.rollout.actions import GateAnswer, HookRun, RequestConfirmation
from modelrollout.webhook import ReadSecret, WebhookConfigError, post_json, resolve

logger = logging.getLogger(__name__)


def confirmation_body(md: ModelDeployment, request: RequestConfirmation) -> dict[str, Any]:
    """What the webhook is asked about (Flagger's gate payload has name, namespace, phase and metadata)."""
    status = md.status
    stable = status.stable if status else None
    return {
        "gate": request.gate,
        "modelDeployment": {
            "namespace": md.metadata.namespace,
            "name": md.metadata.name,
            "uid": md.metadata.uid,
        },
        "candidate": request.revision.to_wire(),
        "stable": stable.to_wire() if stable else None,
        "phase": status.phase if status else None,
        "step": status.current_step if status else None,
        "weights": status.weights.to_wire() if status else None,
    }


async def confirm(
    md: ModelDeployment, request: RequestConfirmation, *, http: httpx.AsyncClient, read_secret: ReadSecret
) -> GateAnswer:
    """One question to the gate's webhook; a yes is a 2xx, anything else (no answer included) is not yet."""
    gates = md.spec.rollout.gates
    target = gates.confirm(request.gate) if gates else None
    revision = request.revision.revision
    if target is None:  # the spec changed under the status that asked: not yes, and the next tick asks no more
        return GateAnswer(gate=request.gate, revision=revision, ok=False, detail="the gate is no longer configured")
    at = f"spec.rollout.gates.{request.gate}"
    try:
        resolved = await resolve(target, read_secret, at=at)
    except WebhookConfigError as exc:
        return GateAnswer(gate=request.gate, revision=revision, ok=False, detail=str(exc))
    answer = await post_json(http, resolved, confirmation_body(md, request))
    if answer.status is None:
        detail = answer.detail  # why there was no answer
    else:
        detail = f"{answer.status}: {answer.detail}" if answer.detail else str(answer.status)
    logger.info("%s/%s gate %s asked %s: %s", md.metadata.namespace, md.metadata.name, request.gate,
                resolved.where(), detail, extra=ref(md.metadata.namespace, md.metadata.name))  # fmt: skip
    return GateAnswer(gate=request.gate, revision=revision, ok=answer.ok, detail=detail)


async def observe_hooks(children: ClusterView, namespace: str, jobs: Sequence[dict[str, Any]]) -> dict[str, HookRun]:
    """The hook Jobs among a ModelDeployment's Jobs, by their key; a failed one's pods are read for its last
    words."""
    runs: dict[str, HookRun] = {}
    for job in jobs:
        run = hook_run(job)
        if run is None:
            continue
        if run.phase == "Failed":
            pods = await children.pods(namespace, {"job-name": job["metadata"]["name"]})
            run = hook_run(job, pods) or run
        runs[run.job] = run
    return runs
