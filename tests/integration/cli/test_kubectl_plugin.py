"""`kubectl modelrollout` against the real API server: the installed console script, run as a process, and the same
through kubectl's plugin lookup. Statuses are the ones the rollout state machine writes (testkit.rollout), put
through the status subresource; a stand-in operator (the verb contract, nothing more) answers verbs where needed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from testkit.crds import install_crds
from testkit.manifests import load_example
from testkit.operator import OperatorProcess
from testkit.processes import OutputReader
from testkit.rollout import Sim
from testkit.waiting import eventually

from modelrollout.api import GROUP, PLURAL, VERSION, ModelDeploymentSpec
from modelrollout.rollout.verbs import VERB_ANNOTATION, Verb, parse_verb_annotation
from tests.conftest import REPO_ROOT, Cluster
from tests.unit.modelrollout.cli.states import with_failed_run

# Each CLI run is a fresh Python process importing the Kubernetes client: seconds each on a busy machine.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

VENV_BIN = REPO_ROOT / ".venv" / "bin"
PLUGIN = VENV_BIN / "kubectl-modelrollout"
MERGE = {"_content_type": "application/merge-patch+json"}
NAME = "churn"
RUN_TIMEOUT_S = 90  # the CLI imports the Kubernetes client, which takes seconds on a loaded machine


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    kubeconfig: Path
    namespace: str

    def env(self) -> dict[str, str]:
        # kubectl finds `kubectl-modelrollout` on PATH; COLUMNS keeps rich's piped tables from wrapping tightly.
        path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path, "COLUMNS": "160"}

    async def run(self, *args: str, via_kubectl: bool = False, namespaced: bool = True) -> Result:
        command = ["kubectl", "modelrollout"] if via_kubectl else [str(PLUGIN)]
        extra = ["-n", self.namespace] if namespaced else []
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            *extra,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())


class Objects:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    async def create(self, example: str = "online-canary-router.yaml", name: str = NAME) -> dict[str, Any]:
        body = load_example(example)
        body["metadata"]["name"] = name
        created: dict[str, Any] = await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, body
        )
        return created

    async def get(self, name: str = NAME) -> dict[str, Any]:
        found: dict[str, Any] = await self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return found

    async def write_status(self, status: dict[str, Any], name: str = NAME) -> None:
        await self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.ns, PLURAL, name, {"status": status}, **MERGE
        )

    async def annotate(self, annotations: dict[str, str | None], name: str = NAME) -> None:
        await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"metadata": {"annotations": annotations}}, **MERGE
        )

    async def warn(self, obj: dict[str, Any], reason: str, message: str) -> None:
        """A Warning event as the operator records it: `<object>.<hex>`, involvedObject = the ModelDeployment."""
        meta = obj["metadata"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": self.ns},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": self.ns,
                "uid": meta["uid"],
            },
            "type": "Warning",
            "reason": reason,
            "message": message,
            "source": {"component": "modelrollout"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.core.create_namespaced_event(self.ns, event)


def rollout_at_analysis_step(manifest: dict[str, Any]) -> dict[str, Any]:
    """The example's canary driven by the real state machine to its analysis step, with a failed Step run."""
    sim = Sim.serving(ModelDeploymentSpec.model_validate(manifest["spec"]))
    sim.tick()
    sim.run(until=lambda s: s.status.current_step == 2, step_s=30)
    status = with_failed_run(sim.status, sim.now)
    status.history[0].message = "revision aaaa1111 (version 1) is available and serving"
    return status.to_wire()


@pytest.fixture
async def objects(kube_api: client.ApiClient, namespace: str) -> Objects:
    await install_crds(kube_api)
    return Objects(kube_api, namespace)


@pytest.fixture
def cli(cluster: Cluster, namespace: str) -> Cli:
    assert PLUGIN.exists(), f"{PLUGIN} is missing: reinstall the operator package (make venv)"
    return Cli(cluster.kubeconfig, namespace)


@contextlib.asynccontextmanager
async def stand_in_operator(objects: Objects, *, ignore: str = "") -> AsyncIterator[list[Verb]]:
    """Applies each verb annotated on NAME in the operator's order: status (lastVerbId, phase, message), then its
    events (a VerbIgnored warning when `ignore`), then the annotation removed."""
    applied: list[Verb] = []

    async def loop() -> None:
        while True:
            obj = await objects.get()
            verb = parse_verb_annotation(obj["metadata"].get("annotations"))
            if verb is not None and verb.id != (obj.get("status") or {}).get("lastVerbId"):
                status: dict[str, Any] = {"lastVerbId": verb.id}
                if not ignore:
                    status |= {"phase": "Paused", "paused": True, "pauseReason": "User"}
                    status["message"] = "paused by a user; resume to continue"
                await objects.write_status(status)
                await asyncio.sleep(0.5)  # a slow pass: the CLI must wait for the whole of it
                if ignore:
                    await objects.warn(obj, "VerbIgnored", f"{verb.name}: {ignore}")
                await objects.annotate({VERB_ANNOTATION: None})
                applied.append(verb)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(loop())
    try:
        yield applied
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- status and list ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("via_kubectl", [False, True], ids=["console-script", "kubectl-plugin"])
async def test_status_shows_step_weights_analysis_and_history(objects: Objects, cli: Cli, via_kubectl: bool) -> None:
    if via_kubectl:
        assert shutil.which("kubectl"), "kubectl is needed on PATH"
    created = await objects.create()
    await objects.write_status(rollout_at_analysis_step(created))

    result = await cli.run("status", NAME, via_kubectl=via_kubectl)

    assert result.code == 0, result.err
    out = result.out
    assert "\x1b[" not in out  # a pipe gets no colour codes
    assert f"namespace {cli.namespace}" in out
    assert "strategy canary" in out
    assert "Progressing" in out
    assert "canary: at step 2 (2 of 5 done)" in out
    assert "analysis of all metrics over 60s" in out
    assert "stable 90%" in out
    assert "canary 10%" in out
    assert "Step run (step 2)" in out
    assert "vs-stable" in out
    assert "+158%" in out
    assert "History" in out
    assert "aaaa1111" in out
    assert "Promoted" in out


@pytest.mark.parametrize("fmt", ["json", "yaml"])
async def test_status_as_json_and_yaml(objects: Objects, cli: Cli, fmt: str) -> None:
    created = await objects.create()
    await objects.write_status(rollout_at_analysis_step(created))
    result = await cli.run("status", NAME, "-o", fmt)
    assert result.code == 0, result.err
    body = json.loads(result.out) if fmt == "json" else yaml.safe_load(result.out)
    assert body["metadata"]["name"] == NAME
    assert "managedFields" not in body["metadata"]
    assert body["status"]["currentStep"] == 2
    assert body["status"]["weights"] == {"stable": 90, "canary": 10, "mirror": 0}


async def test_status_watch_renders_each_change(objects: Objects, cli: Cli) -> None:
    created = await objects.create()
    await objects.write_status(rollout_at_analysis_step(created))
    process = await asyncio.create_subprocess_exec(
        str(PLUGIN),
        "status",
        NAME,
        "--watch",
        "-n",
        cli.namespace,
        env=cli.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    output = OutputReader(process.stdout)
    passed = False
    try:
        await output.until("Progressing", within=RUN_TIMEOUT_S)
        await objects.write_status({"phase": "Paused", "paused": True, "pauseReason": "User"})
        await output.until("paused: User", within=30)
        passed = True
    finally:
        process.terminate()
        _, err = await process.communicate()
        if not passed:  # what the plugin said, and how far it got, for a failure that says only "timed out"
            print(f"--- plugin exit {process.returncode}; stdout so far:\n{output.text}\n--- stderr:\n{err.decode()}")
    assert output.text.index("Progressing") < output.text.index("paused: User")


async def test_list_in_a_namespace_and_in_all(objects: Objects, cli: Cli) -> None:
    created = await objects.create()
    await objects.write_status(rollout_at_analysis_step(created))
    await objects.create("online-shadow.yaml", name="credit-risk")

    here = await cli.run("list")
    assert here.code == 0, here.err
    header, *rows = here.out.strip().splitlines()
    assert header.split() == ["NAME", "MODES", "STRATEGY", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    assert [r.split()[:3] for r in rows] == [[NAME, "online", "canary"], ["credit-risk", "online", "shadow"]]
    assert rows[0].split()[3:7] == ["1", "2", "10", "Progressing"]
    assert "Pending" in rows[1]

    everywhere = await cli.run("list", "-A", via_kubectl=True, namespaced=False)
    assert everywhere.code == 0, everywhere.err
    assert any(line.split()[:2] == [cli.namespace, NAME] for line in everywhere.out.splitlines())


# --- verbs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("via_kubectl", [False, True], ids=["console-script", "kubectl-plugin"])
async def test_no_wait_writes_a_valid_verb_annotation(objects: Objects, cli: Cli, via_kubectl: bool) -> None:
    await objects.create()
    result = await cli.run("promote", NAME, "--full", "--no-wait", via_kubectl=via_kubectl)
    assert result.code == 0, result.err
    verb = parse_verb_annotation((await objects.get())["metadata"]["annotations"])
    assert verb is not None
    assert (verb.name, verb.full) == ("promote", True)
    assert verb.id is not None
    assert f"(id {verb.id}) sent to modeldeployment {cli.namespace}/{NAME}" in result.out


async def test_without_an_operator_wait_times_out_with_exit_1(objects: Objects, cli: Cli) -> None:
    await objects.create()
    result = await cli.run("pause", NAME, "--wait", "--timeout", "2s")
    assert result.code == 1
    assert "timed out after 2s: the operator did not pick up pause" in result.err
    assert "Traceback" not in result.err
    # the verb stays for the operator to apply when it comes
    assert parse_verb_annotation((await objects.get())["metadata"]["annotations"]) is not None


async def test_a_pending_verb_is_replaced_only_with_force(objects: Objects, cli: Cli) -> None:
    await objects.create()
    assert (await cli.run("pause", NAME, "--no-wait")).code == 0
    refused = await cli.run("abort", NAME, "--no-wait")
    assert refused.code == 1
    assert "pause (id " in refused.err
    assert "still pending" in refused.err
    assert "--force" in refused.err
    verb = parse_verb_annotation((await objects.get())["metadata"]["annotations"])
    assert verb is not None
    assert verb.name == "pause"

    forced = await cli.run("abort", NAME, "--no-wait", "--force")
    assert forced.code == 0, forced.err
    verb = parse_verb_annotation((await objects.get())["metadata"]["annotations"])
    assert verb is not None
    assert verb.name == "abort"


async def test_wait_prints_the_phase_once_the_operator_applied_it(objects: Objects, cli: Cli) -> None:
    await objects.create()
    async with stand_in_operator(objects) as applied:
        result = await cli.run("pause", NAME, "--timeout", "60s")
    assert result.code == 0, result.err
    assert [v.name for v in applied] == ["pause"]
    assert f"pause applied to modeldeployment {cli.namespace}/{NAME}; phase Paused" in result.out
    assert "paused by a user; resume to continue" in result.out
    obj = await objects.get()
    assert obj["status"]["lastVerbId"] == applied[0].id
    assert VERB_ANNOTATION not in obj["metadata"].get("annotations", {})


async def test_an_ignored_verb_is_exit_1_with_the_operators_reason(objects: Objects, cli: Cli) -> None:
    created = await objects.create()
    await objects.warn(created, "VerbIgnored", "resume: an older warning that must not be taken for this one")
    async with stand_in_operator(objects, ignore="no rollout in progress"):
        result = await cli.run("resume", NAME, "--timeout", "60s")
    assert result.code == 1
    assert "the operator ignored resume: no rollout in progress" in result.err
    assert "older warning" not in result.err


async def test_the_real_operator_explains_an_ignored_verb(
    objects: Objects, cli: Cli, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(kubeconfig=cluster.kubeconfig, namespace=namespace, log_dir=tmp_path)
    operator.start()
    try:
        await objects.create("online-direct.yaml", name="iris")

        async def healthy() -> bool | None:
            return True if (await objects.get("iris")).get("status", {}).get("phase") == "Healthy" else None

        await eventually(healthy, within=90, what="iris to be Healthy")
        result = await cli.run("promote", "iris", "--timeout", "60s")
        assert result.code == 1, (result.out, result.err, operator.log()[-5000:])
        assert "the operator ignored promote: no rollout in progress" in result.err
        assert "is unchanged; phase Healthy" in result.out
        obj = await objects.get("iris")
        assert VERB_ANNOTATION not in obj["metadata"].get("annotations", {})
        assert obj["status"]["lastVerbId"]
    finally:
        operator.stop()


# --- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("status", "missing"), ("undo", "missing", "--no-wait")])
async def test_an_unknown_object_is_exit_3_naming_it(objects: Objects, cli: Cli, args: tuple[str, ...]) -> None:
    result = await cli.run(*args)
    assert result.code == 3
    assert result.err.strip() == f'error: modeldeployment "missing" not found in namespace "{cli.namespace}"'


async def test_an_empty_namespace_lists_nothing(objects: Objects, cli: Cli) -> None:
    result = await cli.run("list")
    assert result.code == 0
    assert result.out == ""
    assert f"No modeldeployments found in namespace {cli.namespace}." in result.err
