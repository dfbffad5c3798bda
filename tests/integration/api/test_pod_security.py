"""Every pod template the operator writes, in every mode, is admitted by the API server's Pod Security admission at
level `restricted`: a pod the ReplicaSet, Job or CronJob controller could not create there is a model that never
runs, and the operator would only see it as a Deployment that never becomes available.

The templates come from the operator's own pure builders (online model server and router, batch CronJobs of every
role, the run Job and the pre-flight Job, stream consumers leading and shadowing), fed with every example of
examples/ as written and again with everything `spec.pod` can set, a GPU in the model's limits and Kafka TLS/SASL.
Each template becomes a Pod (its metadata, its spec) created with server-side dry run in a namespace that enforces
`restricted`: admission runs in full and nothing is stored. The workload objects themselves go through the same dry
run, so they are valid objects, not only valid pods.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes_asyncio import client
from testkit.manifests import EXAMPLES, load_example
from testkit.waiting import eventually

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.modes.batch.objects import (
    Scoring,
    build_cronjob,
    build_preflight_job,
    build_run_job,
    preflight_job_name,
    preflight_location,
    run_job_name,
    shadow_location,
)
from modelrollout.modes.stream.objects import build_access, build_consumer, group_for, shadow_group_of
from modelrollout.planning.online import Owner, build_deployment
from modelrollout.planning.reconcile import PlanSettings, target_of
from modelrollout.planning.router import build_router

pytestmark = pytest.mark.integration

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    # Enforcement only judges Pods; `warn` makes the server judge the templates inside Deployments, CronJobs and
    # Jobs as well, so a workload object whose pods would be refused says so when it is created.
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}
SETTINGS = PlanSettings(default_image="registry.example/model-server:1", progress_deadline_s=600, history_limit=5)
AT = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
POD_ACCOUNT = "model-runner"
# Every builder (and role) whose pods are checked here; `_covered` fails when one of them yields no pod template.
BUILDERS = {
    "online.build_deployment",
    "router.build_router",
    "batch.build_cronjob(stable)",
    "batch.build_cronjob(shadow)",
    "batch.build_cronjob(canary)",
    "batch.build_run_job",
    "batch.build_preflight_job",
    "stream.build_consumer(leader)",
    "stream.build_consumer(shadow)",
}


def placed(priority_class: str) -> Callable[[dict[str, Any]], None]:
    """Everything a platform team may add to the pods (all of spec.pod), a GPU in the model's limits (an extended
    resource: requests default to the limit), and for stream Kafka over mutual TLS with SASL (a Secret volume) and a
    shadow topic (so a shadowing consumer is built for every stream example)."""

    def mutate(body: dict[str, Any]) -> None:
        spec = body["spec"]
        spec["pod"] = {
            "nodeSelector": {"accelerator": "a100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "ml",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                        ]
                    }
                }
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"modelrollout.dev/name": body["metadata"]["name"]}},
                }
            ],
            "serviceAccountName": POD_ACCOUNT,
            "imagePullSecrets": ["registry-pull"],
            "priorityClassName": priority_class,
            "labels": {"team": "ml-platform", "cost-center": "42"},
            "annotations": {
                "example.com/owner": "ml-platform",
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
            },
        }
        spec["model"]["resources"] = {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"memory": "4Gi", "nvidia.com/gpu": 1},
        }
        if "stream" in spec:
            kafka = spec["stream"]["kafka"]
            kafka["tls"] = {"secretName": "kafka-tls", "clientCertificate": True}
            kafka["sasl"] = {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"}
            kafka.setdefault("shadowTopic", f"{kafka['outputTopic']}-shadow")
        if "batch" in spec:
            spec["batch"]["shards"] = 3  # Indexed Jobs for the roles that shard

    return mutate


@dataclass(frozen=True)
class Written:
    """One object a builder wrote for one example in one variant."""

    case: str  # example/variant/builder, as failures name it
    builder: str
    body: dict[str, Any]

    def template(self) -> dict[str, Any] | None:
        spec = self.body.get("spec", {})
        found = spec["jobTemplate"]["spec"]["template"] if self.body["kind"] == "CronJob" else spec.get("template")
        return cast("dict[str, Any] | None", found)


def _written(spec: ModelDeploymentSpec, owner: Owner) -> list[tuple[str, dict[str, Any]]]:
    """What the operator writes for `spec`: every builder its planners call, with arguments of the kind they pass
    (one revision serves every role here: the pods' security does not depend on which revision a role runs)."""
    target = target_of(spec, SETTINGS)
    revision = target.revision
    out: list[tuple[str, dict[str, Any]]] = []
    if spec.online is not None:
        deployment = build_deployment(
            spec,
            owner,
            revision=revision,
            replicas=spec.online.replicas,
            image_default=SETTINGS.default_image,
            progress_deadline_s=600,
        )
        out.append(("online.build_deployment", deployment))
        # planning.reconcile writes the router only for provider `router`; its pod does not depend on the rest of
        # the rollout, so every online spec builds one and the placed variant covers it with spec.pod.
        out += [("router.build_router", o) for o in build_router(spec, owner, image_default=SETTINGS.default_image)]
    if spec.batch is not None:
        batch = spec.batch
        # As modes.batch.machine hands models to the roles: the default image filled in.
        model = spec.model.model_copy(update={"image": spec.model.image or SETTINGS.default_image})
        stable = build_cronjob(spec, owner, Scoring(role="stable", revision=target, model=model, output=batch.output))
        out.append(("batch.build_cronjob(stable)", stable))
        shadow = Scoring(
            role="shadow", revision=target, model=model, output=shadow_location(batch, revision), reference=model
        )
        out.append(("batch.build_cronjob(shadow)", build_cronjob(spec, owner, shadow)))
        if batch.canary_key:  # a batch canary splits by key; a spec without one cannot run a canary
            canary = Scoring(
                role="canary",
                revision=target,
                model=model,
                output=batch.output,
                keys=(0, 1000),
                token_from_schedule=True,
            )
            out.append(("batch.build_cronjob(canary)", build_cronjob(spec, owner, canary)))
        name = stable["metadata"]["name"]
        run = build_run_job(stable, uid="uid-cronjob", name=run_job_name(name, "verb-1"), at=AT)
        out.append(("batch.build_run_job", run))
        preflight = Scoring(role="preflight", revision=target, model=model, output=preflight_location(batch, revision))
        job = build_preflight_job(spec, owner, preflight, at=AT, name=preflight_job_name(owner.name, revision, AT))
        out.append(("batch.build_preflight_job", job))
    if spec.stream is not None:
        stream = spec.stream
        out += [("stream.build_access", o) for o in build_access(owner)]
        group = group_for(stream, owner, revision, first=revision)
        leader = build_consumer(
            spec, owner, revision=revision, group=group, replicas=stream.replicas, image=SETTINGS.default_image
        )
        out.append(("stream.build_consumer(leader)", leader))
        if stream.kafka.shadow_topic:  # the builder's precondition: a shadow writes there
            shadow_consumer = build_consumer(
                spec,
                owner,
                revision=revision,
                group=shadow_group_of(group),
                replicas=stream.replicas,
                image=SETTINGS.default_image,
                shadow=True,
            )
            out.append(("stream.build_consumer(shadow)", shadow_consumer))
    return out


def everything_written(namespace: str, priority_class: str) -> list[Written]:
    variants: dict[str, Callable[[dict[str, Any]], None]] = {
        "as-written": lambda body: None,
        "placed": placed(priority_class),
    }
    found: list[Written] = []
    for path in EXAMPLES:
        for variant, mutate in variants.items():
            body = copy.deepcopy(load_example(path.name))
            mutate(body)
            resource = ModelDeployment.model_validate(body)
            assert resource.metadata.name is not None
            owner = Owner(name=resource.metadata.name, namespace=namespace, uid=f"uid-{path.stem}")
            for builder, obj in _written(resource.spec, owner):
                found.append(Written(f"{path.stem}/{variant}/{builder}", builder, obj))
    return found


def _pod_of(written: Written, index: int) -> dict[str, Any]:
    """The Pod a controller would create from the template: the template's metadata and spec, a name of its own."""
    template = written.template()
    assert template is not None
    meta = template.get("metadata", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"psa-{index:03d}",
            "labels": meta.get("labels", {}),
            "annotations": meta.get("annotations", {}),
        },
        "spec": template["spec"],
    }


def _message(exc: client.ApiException) -> str:
    body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body)
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return f"{exc.status} {exc.reason}: {body}"


async def _dry_run(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> list[str]:
    """Create `body` with server-side dry run (every admission step, nothing stored) and strict field validation
    (an unknown field is an error, as `kubectl apply` makes it); returns the server's warnings."""
    creators: dict[str, Callable[..., Awaitable[tuple[Any, int, Any]]]] = {
        "Pod": client.CoreV1Api(api).create_namespaced_pod_with_http_info,
        "Deployment": client.AppsV1Api(api).create_namespaced_deployment_with_http_info,
        "CronJob": client.BatchV1Api(api).create_namespaced_cron_job_with_http_info,
        "Job": client.BatchV1Api(api).create_namespaced_job_with_http_info,
    }
    _, _, headers = await creators[body["kind"]](namespace, body, dry_run="All", field_validation="Strict")
    return [str(w) for w in headers.getall("Warning", [])]


@pytest.fixture
async def priority_class(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A PriorityClass for spec.pod.priorityClassName: the Priority admission plugin refuses a pod naming none."""
    name = f"mr-psa-{os.urandom(4).hex()}"
    scheduling = client.SchedulingV1Api(kube_api)
    await scheduling.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name=name), value=1000))
    try:
        yield name
    finally:
        await scheduling.delete_priority_class(name)


@pytest.fixture
async def restricted(kube_api: client.ApiClient) -> AsyncIterator[str]:
    """A namespace enforcing Pod Security `restricted` (latest), with its `default` ServiceAccount: the
    ServiceAccount admission plugin refuses a pod whose account does not exist yet, which is not what is tested."""
    name = f"t-psa-{os.urandom(4).hex()}"
    core = client.CoreV1Api(kube_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED)))
    try:
        await eventually(
            lambda: core.read_namespaced_service_account("default", name),
            within=30,
            what=f"ServiceAccount default in {name}",
        )
        yield name
    finally:
        await core.delete_namespace(name, propagation_policy="Background")


async def _create_accounts(api: client.ApiClient, namespace: str, written: list[Written]) -> None:
    """The ServiceAccounts the pods run as: the router's and the consumers' (which the operator writes beside their
    Deployments) and spec.pod's (the user's); created for real, since pod admission looks them up."""
    names = {w.body["metadata"]["name"] for w in written if w.body["kind"] == "ServiceAccount"} | {POD_ACCOUNT}
    core = client.CoreV1Api(api)
    await asyncio.gather(
        *(
            core.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=n))
            )
            for n in sorted(names)
        )
    )


def _covered(written: list[Written]) -> None:
    """The collection itself covers what this file claims, so a refactor of it cannot silently test less."""
    with_template = [w for w in written if w.template() is not None]
    assert {w.builder for w in with_template} == BUILDERS
    by_example = {Path(p).stem for p in EXAMPLES}
    assert {w.case.split("/")[0] for w in with_template} == by_example
    assert {w.case.split("/")[1] for w in with_template} == {"as-written", "placed"}
    placed_pods = [w.template() for w in with_template if "/placed/" in w.case]
    assert all(t and t["spec"].get("priorityClassName") for t in placed_pods), "spec.pod reached every pod"
    gpus = [
        c
        for t in placed_pods
        if t
        for c in t["spec"]["containers"]
        if "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
    ]
    assert gpus, "the placed variant carries the GPU limit"


async def test_every_pod_the_operator_writes_is_admitted_under_restricted(
    kube_api: client.ApiClient, restricted: str, priority_class: str
) -> None:
    written = everything_written(restricted, priority_class)
    _covered(written)
    await _create_accounts(kube_api, restricted, written)
    pods = [(w, _pod_of(w, i)) for i, w in enumerate(w for w in written if w.template() is not None)]

    # The namespace really enforces: the first pod without its security contexts is refused by Pod Security.
    # Without this, a cluster without the PodSecurity plugin would pass everything below.
    bare = copy.deepcopy(pods[0][1])
    bare["spec"].pop("securityContext")
    for container in bare["spec"]["containers"]:
        container.pop("securityContext")
    with pytest.raises(client.ApiException) as refused:
        await _dry_run(kube_api, restricted, bare)
    assert 'violates PodSecurity "restricted:latest"' in _message(refused.value)

    async def admitted(written: Written, pod: dict[str, Any]) -> str | None:
        try:
            await _dry_run(kube_api, restricted, pod)
        except client.ApiException as exc:
            return f"{written.case}: {_message(exc)}"
        return None

    refusals = [r for r in await asyncio.gather(*(admitted(w, p) for w, p in pods)) if r is not None]
    assert not refusals, f"{len(refusals)} of {len(pods)} pods refused:\n" + "\n".join(refusals)


async def test_every_workload_the_operator_writes_is_valid_in_a_restricted_namespace(
    kube_api: client.ApiClient, restricted: str, priority_class: str
) -> None:
    workloads = [w for w in everything_written(restricted, priority_class) if w.template() is not None]

    async def accepted(written: Written) -> str | None:
        try:
            warnings = await _dry_run(kube_api, restricted, written.body)
        except client.ApiException as exc:
            return f"{written.case}: {_message(exc)}"
        # Other warnings (a deprecated field, say) are the API server's advice; Pod Security's mean refused pods.
        security = [w for w in warnings if "PodSecurity" in w]
        return f"{written.case}: {'; '.join(security)}" if security else None

    problems = [p for p in await asyncio.gather(*(accepted(w) for w in workloads)) if p is not None]
    assert not problems, f"{len(problems)} of {len(workloads)} workloads:\n" + "\n".join(problems)
