"""Batch mode end to end: the operator's CronJobs on the real API server and controller-manager (CronJob and Job
controllers), the scorer's pods run by the local kubelet, the data lake and the models in a real S3-compatible
server (SeaweedFS), credentials from a Secret. The examples are applied as users would write them; only what points at
this machine (the S3 endpoint, the node the local kubelet runs) and, for the nightly one, the schedule (every
minute instead of every night) are changed.

What status must answer without anyone opening a notebook: did the job run, were all records scored, did the
input schema match, did the prediction distribution shift, which model version wrote this output."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kubernetes_asyncio import client
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from testkit.kubelet.handle import NODE_SELECTOR, KubeletProcess
from testkit.manifests import load_example
from testkit.operator import OperatorProcess, call_failed
from testkit.prometheus import PrometheusServer
from testkit.s3 import CREDENTIALS, S3Server
from testkit.waiting import eventually

from modelrollout.api.resource import GROUP, PLURAL, VERSION
from modelrollout.modes.batch.objects import PREFLIGHT_RECORDS, run_job_name
from modelrollout.rollout.verbs import Verb, verb_annotation
from modelrollout_contract.batch import MANIFEST_NAME, Manifest
from modelrollout_contract.sticky import bucket
from tests.e2e import dashboards
from tests.e2e.dashboards import check_panels, operator_targets

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MERGE_PATCH = "application/merge-patch+json"
NIGHT = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)
# The breast-cancer rows repeated: enough records that the gates' measures are not noise, small enough to score in
# a second.
COPIES = 20


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """stable; `close` (the same model refitted on 90% of the rows: 99% agreement, PSI < 0.01); `flipped` (a tree
    fitted to stable's labels with 20% of them flipped: 80% agreement)."""
    directory = tmp_path_factory.mktemp("batch-models")
    x, y = load_breast_cancer(return_X_y=True)
    stable = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x, y)
    keep = np.random.default_rng(0).random(len(y)) < 0.9
    close = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x[keep], y[keep])
    labels = stable.predict(x)
    flip = np.random.default_rng(1).permutation(len(y))[: len(y) // 5]
    labels[flip] = 1 - labels[flip]
    flipped = DecisionTreeClassifier(random_state=0).fit(x, labels)
    paths = {}
    for name, estimator in (("stable", stable), ("close", close), ("flipped", flipped)):
        paths[name] = directory / f"{name}.joblib"
        joblib.dump(estimator, paths[name])
    return paths


def dataset(id_column: str, *, drop: str | None = None) -> pa.Table:
    x, _ = load_breast_cancer(return_X_y=True)
    rows = np.tile(x, (COPIES, 1))
    columns: dict[str, Any] = {id_column: np.arange(len(rows))}
    columns |= {f"f{i}": rows[:, i] for i in range(rows.shape[1]) if f"f{i}" != drop}
    return pa.table(columns)


class Lake:
    """Buckets `models` and `lake` on a real S3 server, and what the tests read back from them."""

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.s3 = server.client()
        for name in ("models", "lake"):
            self.s3.create_bucket(Bucket=name)

    def put_model(self, key: str, path: Path) -> None:
        self.s3.put_object(Bucket="models", Key=key, Body=path.read_bytes())

    def put_table(self, key: str, table: pa.Table, *, files: int = 2) -> None:
        for i, piece in enumerate(np.array_split(np.arange(table.num_rows), files)):
            buffer = io.BytesIO()
            pq.write_table(table.take(piece), buffer)
            self.s3.put_object(Bucket="lake", Key=f"{key}/part-{i}.parquet", Body=buffer.getvalue())

    def keys(self, prefix: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket="lake", Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def manifest(self, uri: str) -> Manifest:
        key = uri.removeprefix("s3://lake/")
        return Manifest.model_validate(json.loads(self.s3.get_object(Bucket="lake", Key=key)["Body"].read()))

    def output(self, manifest: Manifest) -> pa.Table:
        """The rows a reader trusting the manifest sees: its parts, and only those."""
        tables = []
        for part in manifest.parts:
            body = self.s3.get_object(Bucket="lake", Key=part.path.removeprefix("s3://lake/"))["Body"].read()
            tables.append(pq.read_table(io.BytesIO(body)))
        return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def lake(s3_server: S3Server) -> Lake:
    s3_server.reset()
    return Lake(s3_server)


class Deployments:
    """ModelDeployments of one test, applied as users do, and what their status and events say."""

    def __init__(self, api: client.ApiClient, namespace: str, lake: Lake) -> None:
        self.api = api
        self.namespace = namespace
        self.lake = lake
        self.custom = client.CustomObjectsApi(api)
        self.names: list[str] = []

    def localised(self, body: dict[str, Any]) -> dict[str, Any]:
        """An example pointed at this machine: the S3 endpoint, and pods on the local kubelet's node."""
        body = copy.deepcopy(body)
        spec = body["spec"]
        for env in spec["model"].get("env", []):
            if env["name"] == "MODELSERVER_S3_ENDPOINT_URL":
                env["value"] = self.lake.server.url
        spec["pod"] = {"nodeSelector": NODE_SELECTOR}
        return body

    async def apply(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name not in self.names:
            self.names.append(name)
            await self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        else:
            patch = {"spec": body["spec"]}
            await self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, patch, _content_type=MERGE_PATCH
            )

    async def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return found

    async def status(self, name: str) -> dict[str, Any]:
        return dict((await self.get(name)).get("status") or {})

    async def run(self, name: str, at: datetime) -> str:
        """`kubectl modelrollout run NAME --date ...`: the verb the CLI sends."""
        verb = Verb(name="run", id=f"{time.time_ns():x}", at=at)
        body = {"metadata": {"annotations": verb_annotation(verb)}}
        await self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body,
                                                         _content_type=MERGE_PATCH)  # fmt: skip
        assert verb.id is not None
        return verb.id

    async def wait(self, name: str, check: Any, what: str, *, within: float = 120) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            status = await self.status(name)
            return status if check(status) else None

        found: dict[str, Any] = await eventually(ready, within=within, what=f"{name}: {what}")
        return found

    async def events(self, name: str) -> list[tuple[str, str]]:
        selector = f"involvedObject.kind=ModelDeployment,involvedObject.name={name}"
        listed = await client.CoreV1Api(self.api).list_namespaced_event(self.namespace, field_selector=selector)
        return [(e.reason, e.message) for e in sorted(listed.items, key=lambda e: e.metadata.name)]

    async def delete_all(self) -> None:
        for name in self.names:
            with contextlib.suppress(client.ApiException):
                await self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
                )
        core = client.CoreV1Api(self.api)

        async def no_pods() -> bool | None:
            return True if not (await core.list_namespaced_pod(self.namespace)).items else None

        await eventually(no_pods, within=90, what=f"the pods of {self.namespace} to stop")


@pytest.fixture
async def deployments(  # noqa: PLR0917 - pytest passes fixtures by name
    kube_api: client.ApiClient, namespace: str, lake: Lake, kubelet: KubeletProcess, operator: Any,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Deployments]:  # fmt: skip
    credentials = {k: v for k, v in CREDENTIALS.items() if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    await client.CoreV1Api(kube_api).create_namespaced_secret(
        namespace, {"metadata": {"name": "lake-credentials"}, "stringData": credentials}
    )
    made = Deployments(kube_api, namespace, lake)
    try:
        yield made
    finally:
        if call_failed(request):
            print(kubelet.describe_namespace(namespace))
        await made.delete_all()


def last_run(status: dict[str, Any], role: str = "stable") -> dict[str, Any] | None:
    runs = [r for r in (status.get("batch") or {}).get("runs", []) if r["role"] == role]
    return runs[-1] if runs else None


def ended(role: str = "stable", *, job_prefix: str = "") -> Any:
    def check(status: dict[str, Any]) -> bool:
        run = last_run(status, role)
        return run is not None and run["job"].startswith(job_prefix) and run["phase"] != "Running"

    return check


async def test_the_nightly_example_scores_a_parquet_dataset_from_s3_into_s3_on_its_schedule(
    deployments: Deployments, lake: Lake, models: dict[str, Path]
) -> None:
    body = deployments.localised(load_example("batch.yaml"))
    body["spec"]["batch"]["schedule"] = "* * * * *"  # every minute, not every night: the CronJob controller fires
    lake.put_model("ltv/3/model.joblib", models["stable"])
    data = dataset("customer_id")
    # The run reads its own partition: the scheduled date in the schedule's time zone (Europe/Paris).
    for day in (datetime.now(ZoneInfo("Europe/Paris")).date(), (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(
            minutes=2)).date()):  # fmt: skip
        lake.put_table(f"customers/date={day.isoformat()}", data)
    await deployments.apply(body)
    status = await deployments.wait("ltv-nightly", ended(), "the first scheduled run to end", within=150)
    run = last_run(status)
    assert run is not None
    assert run["phase"] == "Succeeded", run
    assert run["counts"] == {"read": data.num_rows, "scored": data.num_rows, "rejected": 0}
    assert run["job"].startswith("ltv-nightly-batch-"), "a Job of the CronJob, made by the controller"
    manifest = lake.manifest(run["manifest"])
    assert manifest.model.version == "3"
    assert manifest.counts.scored == data.num_rows
    out = lake.output(manifest)
    assert sorted(out.column("customer_id").to_pylist()) == list(range(data.num_rows)), "every record exactly once"
    assert set(out.column("model_version").to_pylist()) == {"3"}
    ready = {c["type"]: c for c in status["conditions"]}
    assert ready["BatchReady"]["status"] == "True"
    assert ready["Ready"]["status"] == "True"
    assert status["phase"] == "Healthy"
    assert any(reason == "RunSucceeded" for reason, _ in await deployments.events("ltv-nightly"))

    # Version 4 goes out by strategy direct (the example's default): a pre-flight scores a sample of the latest
    # input aside, then the CronJob switches to it.
    lake.put_model("ltv/4/model.joblib", models["close"])
    body["spec"]["model"] |= {"version": "4", "uri": "s3://models/ltv/4/model.joblib"}
    await deployments.apply(body)
    status = await deployments.wait("ltv-nightly", lambda s: (s.get("stable") or {}).get("version") == "4",
                                    "version 4 promoted after its pre-flight")  # fmt: skip
    [preflight] = [r for r in status["batch"]["runs"] if r["role"] == "preflight"]
    assert preflight["phase"] == "Succeeded"
    assert preflight["gate"] == "Passed"
    assert preflight["counts"]["read"] == min(data.num_rows, PREFLIGHT_RECORDS)
    assert "/_preflight/" in preflight["manifest"]
    cronjobs = client.BatchV1Api(deployments.api)
    stored = await cronjobs.read_namespaced_cron_job("ltv-nightly-batch", deployments.namespace)
    assert stored.metadata.labels["modelrollout.dev/version"] == "4"


def shadow_example(deployments: Deployments, version: str) -> dict[str, Any]:
    body = deployments.localised(load_example("batch-shadow.yaml"))
    body["spec"]["model"]["version"] = version
    body["spec"]["model"]["uri"] = f"s3://models/churn/{version}/model.joblib"
    return body


async def test_shadow_promotes_a_close_version_and_rolls_back_one_that_flips_a_fifth_of_the_labels(
    deployments: Deployments, lake: Lake, models: dict[str, Path], operator: OperatorProcess, tmp_path: Path
) -> None:
    # The operator's series, for the dashboards' batch panels (checked at the end); nothing here is analysed.
    prometheus = PrometheusServer(
        work_dir=tmp_path / "prometheus", targets=operator_targets(operator, deployments.namespace)
    )
    prometheus.start()
    started = time.time()
    try:
        await _shadow_promotes_then_rolls_back(deployments, lake, models)
        check_panels(prometheus.url, dashboards.BATCH, namespace=deployments.namespace, name="churn-nightly",
                     model="churn", start=started)  # fmt: skip
    finally:
        prometheus.close()


async def _shadow_promotes_then_rolls_back(deployments: Deployments, lake: Lake, models: dict[str, Path]) -> None:
    for version, model in (("8", "stable"), ("9", "close"), ("10", "flipped")):
        lake.put_model(f"churn/{version}/model.joblib", models[model])
    data = dataset("customer")
    nights = [NIGHT + timedelta(days=n) for n in range(3)]
    for night in nights:
        lake.put_table(f"events/date={night.date().isoformat()}", data)
    await deployments.apply(shadow_example(deployments, "8"))
    await deployments.wait("churn-nightly", lambda s: s.get("phase") == "Healthy", "version 8 Healthy")

    # Version 9 is shadowed for two runs (rollout.shadow.runs), each beside the stable run of the same night.
    await deployments.apply(shadow_example(deployments, "9"))
    await deployments.wait("churn-nightly", lambda s: s.get("phase") == "Progressing", "the shadow rollout to start")
    for n, night in enumerate(nights[:2]):
        verb = await deployments.run("churn-nightly", night)
        await deployments.wait("churn-nightly", ended("stable", job_prefix=run_job_name("churn-nightly-batch", verb)),
                               f"night {n}'s stable run")  # fmt: skip
    status = await deployments.wait("churn-nightly", lambda s: s.get("phase") == "Healthy" and not s.get("canary"),
                                    "version 9 promoted")  # fmt: skip
    assert status["stable"]["version"] == "9", status.get("message")
    shadows = [r for r in status["batch"]["runs"] if r["role"] == "shadow"]
    assert [r["gate"] for r in shadows] == ["Passed", "Passed"], shadows
    compared = shadows[-1]["comparison"]
    assert compared["records"] == data.num_rows
    assert compared["agreement"] > 0.98
    assert compared["psi"] < 0.1
    assert status["history"][-1]["outcome"] == "Promoted"

    # Version 10 disagrees on a fifth of the records: one shadow run rolls it back, with the reason.
    await deployments.apply(shadow_example(deployments, "10"))
    await deployments.wait("churn-nightly", lambda s: (s.get("canary") or {}).get("version") == "10",
                           "the rollout of version 10 to start")  # fmt: skip
    verb = await deployments.run("churn-nightly", nights[2])
    status = await deployments.wait("churn-nightly", lambda s: s.get("phase") == "RolledBack", "version 10 rolled back")
    assert status["stable"]["version"] == "9"
    said = re.search(r"agreement (0\.\d+) \(min 0\.98\)", status["message"])
    assert said is not None, status["message"]
    assert 0.75 < float(said.group(1)) < 0.85, "a fifth of the labels flipped (against version 9, not 8)"
    prefix = run_job_name("churn-nightly-batch", verb)
    stable_run = await deployments.wait("churn-nightly", ended("stable", job_prefix=prefix), "that night's stable run")
    run = last_run(stable_run)
    assert run is not None
    assert run["phase"] == "Succeeded"
    # The stable output of that night is complete, written by version 9 alone; the candidate's is aside.
    manifest = lake.manifest(run["manifest"])
    out = lake.output(manifest)
    assert sorted(out.column("customer").to_pylist()) == list(range(data.num_rows))
    assert set(out.column("model_version").to_pylist()) == {"9"}
    day = nights[2].date().isoformat()
    shadow_keys = [k for k in lake.keys(f"churn/date={day}/_shadow/") if k.endswith(".parquet")]
    assert shadow_keys, "the candidate wrote into the shadow location"
    assert all("/_shadow/" not in part.path for part in manifest.parts)
    assert "RolledBack" in {reason for reason, _ in await deployments.events("churn-nightly")}


async def test_a_dataset_missing_a_column_fails_before_writing_and_status_names_it(
    deployments: Deployments, lake: Lake, models: dict[str, Path]
) -> None:
    lake.put_model("churn/8/model.joblib", models["stable"])
    night = NIGHT.date().isoformat()
    lake.put_table(f"events/date={night}", dataset("customer", drop="f3"))
    await deployments.apply(shadow_example(deployments, "8"))
    await deployments.run("churn-nightly", NIGHT)
    status = await deployments.wait("churn-nightly", ended(), "the run to end")
    run = last_run(status)
    assert run is not None
    assert run["phase"] == "Failed"
    assert run["reason"] == "SchemaMismatch"
    assert "f3" in run["message"]
    ready = {c["type"]: c for c in status["conditions"]}
    assert ready["BatchReady"]["status"] == "False"
    assert ready["BatchReady"]["reason"] == "RunFailed"
    assert "f3" in ready["BatchReady"]["message"]
    assert lake.keys(f"churn/date={night}") == [], "nothing written"
    # Exit code 3 (a schema mismatch) fails the Job at once: no retry can change the input.
    assert run["job"].startswith("churn-nightly-batch-run-")


async def test_a_scorer_killed_mid_run_leaves_nothing_visible_and_the_retry_commits_a_complete_run(
    deployments: Deployments, lake: Lake, models: dict[str, Path], kubelet: KubeletProcess
) -> None:
    lake.put_model("churn/8/model.joblib", models["stable"])
    night = NIGHT.date().isoformat()
    data = dataset("customer")
    lake.put_table(f"events/date={night}", data, files=6)
    body = shadow_example(deployments, "8")
    # Small batches through a slow model: the run takes seconds, so there is a mid-run to kill it in; small parts,
    # so some are in the lake by then (an S3 object is visible once whole).
    body["spec"]["model"]["env"] += [
        {"name": "MODELSERVER_BATCH_ROWS", "value": "500"},
        {"name": "MODELSERVER_PART_ROWS", "value": "1000"},
    ]
    body["spec"]["model"] |= {"format": "custom", "className": "testkit.faulty:SlowModel"}
    body["spec"]["model"]["env"] += [{"name": "MODELROLLOUT_E2E_LATENCY_MS", "value": "150"}]
    await deployments.apply(body)
    await deployments.run("churn-nightly", NIGHT)
    core = client.CoreV1Api(deployments.api)

    async def scoring_pod() -> dict[str, Any] | None:
        listed = deployments.api.sanitize_for_serialization(await core.list_namespaced_pod(deployments.namespace))
        for pod in listed["items"]:
            for status in pod.get("status", {}).get("containerStatuses") or []:
                if (status.get("state") or {}).get("running") and status.get("containerID"):
                    return dict(status)
        return None

    running = await eventually(scoring_pod, within=60, what="the scorer to run")

    async def a_part() -> bool | None:
        return True if lake.keys(f"churn/date={night}/part-") else None

    await eventually(a_part, within=60, what="the scorer to write its first part")
    os.kill(int(running["containerID"].removeprefix("local://")), signal.SIGKILL)
    assert MANIFEST_NAME not in " ".join(lake.keys(f"churn/date={night}")), "no manifest after kill -9"
    status = await deployments.wait("churn-nightly", ended(), "the retried run to end", within=150)
    run = last_run(status)
    assert run is not None
    assert run["phase"] == "Succeeded", run
    manifest = lake.manifest(run["manifest"])
    out = lake.output(manifest)
    assert sorted(out.column("customer").to_pylist()) == list(range(data.num_rows))
    # The killed attempt's parts are gone: the commit deleted what its manifest does not list.
    listed = {f"s3://lake/{k}" for k in lake.keys(f"churn/date={night}/part-")}
    assert listed == {part.path for part in manifest.parts}


async def test_a_canary_over_three_runs_sends_the_same_keys_to_the_candidate_each_run(
    deployments: Deployments, lake: Lake, models: dict[str, Path]
) -> None:
    for version, model in (("8", "stable"), ("9", "close")):
        lake.put_model(f"churn/{version}/model.joblib", models[model])
    data = dataset("customer")
    nights = [NIGHT + timedelta(days=n) for n in range(3)]
    for night in nights:
        lake.put_table(f"events/date={night.date().isoformat()}", data)
    canary = {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}]}}
    first = shadow_example(deployments, "8")
    first["spec"]["rollout"] = canary
    await deployments.apply(first)
    await deployments.wait("churn-nightly", lambda s: s.get("phase") == "Healthy", "version 8 Healthy")
    second = shadow_example(deployments, "9")
    second["spec"]["rollout"] = canary
    await deployments.apply(second)
    await deployments.wait("churn-nightly", lambda s: s.get("phase") == "Progressing", "the canary to start")
    keys = data.column("customer").to_pylist()
    for weight, night in zip((10, 50, 100), nights, strict=True):
        status = await deployments.status("churn-nightly")
        assert status["weights"]["canary"] == weight, status.get("message")
        verb = await deployments.run("churn-nightly", night)
        canary_job = run_job_name("churn-nightly-canary", verb)
        done = await deployments.wait("churn-nightly", ended("canary", job_prefix=canary_job),
                                      f"the {weight}% run's canary share")  # fmt: skip
        part = last_run(done, "canary")
        assert part is not None
        assert part["phase"] == "Succeeded", part
        stable_job = run_job_name("churn-nightly-batch", verb)
        both = await deployments.wait("churn-nightly", ended("stable", job_prefix=stable_job),
                                      f"the {weight}% run's stable share")  # fmt: skip
        tonight = [r for r in both["batch"]["runs"] if r["job"] in (canary_job, stable_job)]
        manifest_uri = next(r["manifest"] for r in tonight if r.get("manifest"))
        manifest = lake.manifest(manifest_uri)
        out = lake.output(manifest)
        by_version = dict(zip(out.column("customer").to_pylist(), out.column("model_version").to_pylist(), strict=True))
        assert sorted(by_version) == keys, "every record exactly once, in one output"
        candidate = {k for k, v in by_version.items() if v == "9"}
        assert candidate == {k for k in keys if bucket(str(k)) < weight * 100}, "the same keys by hash, every run"
    status = await deployments.wait("churn-nightly", lambda s: s.get("phase") == "Healthy" and not s.get("canary"),
                                    "version 9 promoted")  # fmt: skip
    assert status["stable"]["version"] == "9"
