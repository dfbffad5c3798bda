"""The batch scorer as Kubernetes runs it: an Indexed Job of `modelserver batch` pods on the local kubelet, the
model and the data in a real S3-compatible server, credentials from a Secret. Each pod scores its shard; the
last one commits the run; the pods' termination messages tell how the run ended (what the operator's batch mode
reads), and the committed output holds every input record exactly once."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kubernetes_asyncio import client
from testkit.kubelet.handle import NODE_SELECTOR, KubeletProcess
from testkit.models import Classifiers
from testkit.s3 import CREDENTIALS, S3Server
from testkit.waiting import eventually

from modelrollout_contract.batch import MANIFEST_NAME, Manifest, RunResult

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUCKET = "lake"
SHARDS = 2
IMAGE = "ghcr.io/modelrollout/model-server:0.1.0"
INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with S3Server(tmp_path) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def upload(s3: S3Server, classifiers: Classifiers) -> int:
    """The stable model and the dataset (as 3 parquet files of one night) into the bucket; the row count."""
    s3.client().put_object(Bucket=BUCKET, Key="models/churn/1/model.joblib", Body=classifiers.stable.path.read_bytes())
    rows = classifiers.dataset.rows
    data = pa.table({"customer": np.arange(len(rows)), **{f"f{i}": rows[:, i] for i in range(rows.shape[1])}})
    for i, piece in enumerate(np.array_split(np.arange(len(rows)), 3)):
        buffer = io.BytesIO()
        pq.write_table(data.take(piece), buffer)
        key = f"events/date=2026-12-03/part-{i}.parquet"
        s3.client().put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return len(rows)


def scorer_job(s3: S3Server) -> dict[str, Any]:
    def secret(key: str) -> dict[str, Any]:
        return {"name": key, "valueFrom": {"secretKeyRef": {"name": "lake-credentials", "key": key}}}

    env = [
        {"name": "MODELSERVER_MODEL_URI", "value": f"s3://{BUCKET}/models/churn/1/model.joblib"},
        {"name": "MODELSERVER_MODEL_NAME", "value": "churn"},
        {"name": "MODELSERVER_MODEL_VERSION", "value": "1"},
        {"name": "MODELSERVER_DOWNLOAD_DIR", "value": "/var/run/modelserver"},
        {"name": "MODELSERVER_S3_ENDPOINT_URL", "value": s3.url},
        {"name": "MODELSERVER_INPUT_URI", "value": f"s3://{BUCKET}/events/date={{date}}/"},
        {"name": "MODELSERVER_OUTPUT_URI", "value": f"s3://{BUCKET}/scores/date={{date}}"},
        {"name": "MODELSERVER_ID_COLUMNS", "value": '["customer"]'},
        {"name": "MODELSERVER_SCHEDULED_TIME", "value": "2026-12-03T02:00:00Z"},
        {"name": "MODELSERVER_SHARD_COUNT", "value": str(SHARDS)},
        {"name": "MODELSERVER_SHARD_INDEX", "valueFrom": {"fieldRef": {"fieldPath": INDEX}}},
        {"name": "MODELSERVER_RUN_TOKEN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
        *(secret(key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
    ]
    container = {
        "name": "scorer",
        "image": IMAGE,
        "args": ["batch"],
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "models", "mountPath": "/var/run/modelserver"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "churn-nightly"},
        "spec": {
            "completionMode": "Indexed",
            "completions": SHARDS,
            "parallelism": SHARDS,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": NODE_SELECTOR,
                    "containers": [container],
                    "volumes": [{"name": "models", "emptyDir": {}}],
                }
            },
        },
    }


async def test_an_indexed_job_of_scorer_pods_commits_one_complete_run(
    kubelet: KubeletProcess, kube_api: client.ApiClient, namespace: str, s3: S3Server, classifiers: Classifiers
) -> None:
    rows = upload(s3, classifiers)
    core, batch = client.CoreV1Api(kube_api), client.BatchV1Api(kube_api)
    credentials = {k: v for k, v in CREDENTIALS.items() if k.startswith("AWS_") and "KEY" in k}
    await core.create_namespaced_secret(
        namespace, {"metadata": {"name": "lake-credentials"}, "stringData": credentials}
    )
    await batch.create_namespaced_job(namespace, scorer_job(s3))

    async def complete() -> dict[str, Any] | None:
        job = kube_api.sanitize_for_serialization(await batch.read_namespaced_job("churn-nightly", namespace))
        conditions = {c["type"]: c["status"] for c in job["status"].get("conditions") or []}
        if conditions.get("Failed") == "True":
            raise AssertionError(f"the Job failed: {job['status']}\n{kubelet.describe_namespace(namespace)}")
        return job if conditions.get("Complete") == "True" else None

    await eventually(complete, within=120, what="the scorer Job to complete")
    pods = kube_api.sanitize_for_serialization(await core.list_namespaced_pod(namespace))["items"]
    assert len(pods) == SHARDS
    results = [
        RunResult.model_validate_json(p["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
        for p in pods
    ]
    assert {r.outcome for r in results} == {"Succeeded"}
    committed = [r for r in results if r.manifest]
    assert len(committed) >= 1, results  # the last shard commits (both, if they ended together)
    assert committed[0].manifest == f"s3://{BUCKET}/scores/date=2026-12-03/{MANIFEST_NAME}"
    assert committed[0].counts.scored == rows

    body = s3.client().get_object(Bucket=BUCKET, Key=f"scores/date=2026-12-03/{MANIFEST_NAME}")["Body"].read()
    manifest = Manifest.model_validate(json.loads(body))
    assert manifest.shards == SHARDS
    assert manifest.attempt == "churn-nightly"
    assert manifest.model.sha256 == hashlib.sha256(classifiers.stable.path.read_bytes()).hexdigest()
    ids: list[int] = []
    for part in manifest.parts:
        key = part.path.removeprefix(f"s3://{BUCKET}/")
        table = pq.read_table(io.BytesIO(s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        ids += table.column("customer").to_pylist()
    assert sorted(ids) == list(range(rows)), "every input record exactly once"
