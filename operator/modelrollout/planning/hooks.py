"""The preRollout hook Job (spec.rollout.gates.preRollout): built from the engine's `RunHook`, and read back as a
`HookRun` (how it ended, and why it failed in the hook's own words: its termination message or the end of its log).

Hook Jobs are never pruned: a finished one stays for `kubectl logs` (a failed smoke test's output is the point),
until its TTL after finishing or the ModelDeployment's deletion (it is owned by it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from modelrollout.api.base import duration_seconds
from modelrollout.api.gates import HookJob
from modelrollout.api.resource import GROUP
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.planning.names import LABEL_NAME, LABEL_REVISION, service_name
from modelrollout.planning.online import SERVICE_PORT, Owner
from modelrollout.planning.placement import place
from modelrollout.rollout.actions import HookRun, RunHook

LABEL_HOOK = f"{GROUP}/hook"
# Long enough to read a failed hook's logs after the rollback, short enough not to collect Jobs forever.
TTL_AFTER_FINISHED_S = 24 * 3600
# A Job's name is also its pods' `job-name` label value: 63 characters at most.
_NAME_LIMIT = 63
_MESSAGE_CHARS = 400


def hook_job_name(name: str, key: str) -> str:
    """`<name>-pre-<revision>-<start>`, the ModelDeployment's part shortened (with a hash, so two long names that
    share a start stay apart) when the whole would not be a label value."""
    whole = f"{name}-pre-{key}"
    if len(whole) <= _NAME_LIMIT:
        return whole
    tail = f"-{hashlib.sha256(name.encode()).hexdigest()[:6]}-pre-{key}"
    return name[: _NAME_LIMIT - len(tail)].rstrip("-") + tail


def build_hook_job(spec: ModelDeploymentSpec, owner: Owner, run: RunHook, *, image_default: str) -> dict[str, Any]:
    hook = spec.rollout.gates.pre_rollout if spec.rollout.gates else None
    if hook is None:
        raise ValueError("RunHook without spec.rollout.gates.preRollout")
    revision = run.revision.revision
    # Not the online pods' labels (no mode): no Service, PodDisruptionBudget or revision health may count the
    # hook's pod as one of the model's.
    labels = {LABEL_NAME: owner.name, LABEL_REVISION: revision, LABEL_HOOK: run.job}
    url = f"http://{service_name(owner.name, 'canary')}.{owner.namespace}.svc:{SERVICE_PORT}"
    env = [
        {"name": "MODEL_URL", "value": url},
        {"name": "MODEL_NAME", "value": spec.model.name},
        {"name": "MODEL_VERSION", "value": spec.model.version},
        {"name": "REVISION", "value": revision},
        *({"name": e.name, "value": e.value} for e in hook.env),
    ]
    container: dict[str, Any] = {
        "name": "hook",
        "image": _image(hook, spec, image_default),
        "command": list(hook.command),
        "env": env,
        # The hook's last words become its HookRun message when it writes no termination message itself.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if hook.args:
        container["args"] = list(hook.args)
    template = {
        "metadata": {"labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": owner.metadata(hook_job_name(owner.name, run.job), labels),
        "spec": {
            "backoffLimit": hook.retries,
            "activeDeadlineSeconds": max(1, int(duration_seconds(hook.timeout))),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            "template": place(template, spec.pod, model_pods=False),
        },
    }


def _image(hook: HookJob, spec: ModelDeploymentSpec, image_default: str) -> str:
    return hook.image or spec.model.image or image_default


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def _last_words(pods: Iterable[Mapping[str, Any]]) -> str:
    """The newest failed pod's termination message (its own, or the end of its log)."""
    said = ""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode") not in (None, 0):
                message = (terminated.get("message") or "").strip()
                said = f"exit code {terminated['exitCode']}" + (f": {message[-_MESSAGE_CHARS:]}" if message else "")
    return said


def hook_run(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]] = ()) -> HookRun | None:
    """How a hook Job stands; None for a Job that is not a hook. `pods` (the Job's) are read for a failed one."""
    key = (job["metadata"].get("labels") or {}).get(LABEL_HOOK)
    if not key:
        return None
    if _condition(job, "Complete") is not None:
        return HookRun(job=key, phase="Succeeded")
    failed = _condition(job, "Failed")
    if failed is not None:
        why = ": ".join(p for p in (failed.get("reason"), failed.get("message")) if p)
        words = _last_words(pods)
        return HookRun(job=key, phase="Failed", message="; ".join(p for p in (why, words) if p)[:_MESSAGE_CHARS])
    status = job.get("status") or {}
    tried = f", {status['failed']} failed so far" if status.get("failed") else ""
    return HookRun(job=key, phase="Running", message=f"running ({status.get('active', 0)} active{tried})")
