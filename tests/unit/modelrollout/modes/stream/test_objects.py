"""The objects of stream inference (modes.stream.objects): the consumer Deployment configures `modelserver stream`
completely through its env, the share ConfigMap holds a document the consumers accept, and KEDA and the PDB come
only when they mean something."""

from __future__ import annotations

import os
from typing import Any

import pytest

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import StreamShare
from modelrollout.modes.stream.objects import (
    TLS_DIR,
    build_access,
    build_consumer,
    build_pdb,
    build_scaled_object,
    build_share_configmap,
    consumer_name,
    document_of,
    group_for,
    rebuild_consumer,
    revision_of_object,
    shadow_group_of,
    share_name,
)
from modelrollout.planning.names import LABEL_MODE, LABEL_NAME, LABEL_REVISION
from modelrollout_contract.stream import CONFIG_KEY, parse_document
from modelserver.stream.settings import StreamSettings
from tests.unit.modelrollout.modes.stream.support import IMAGE, NAME, NAMESPACE, OWNER, UID, ref, spec

REV = ref("5").revision
SASL = {"mechanism": "SCRAM-SHA-512", "secretName": "kafka-user"}
TLS = {"secretName": "kafka-ca", "clientCertificate": True}


def kafka(**extra: Any) -> dict[str, Any]:
    return {
        "bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092",
        "inputTopic": "transactions",
        "outputTopic": "transaction-scores",
        "consumerGroup": "tx-scoring",
        "deadLetterTopic": "transactions-dlq",
        **extra,
    }


SHADOW_TOPIC = "transaction-scores-shadow"


def shadowing_spec(mirror_percent: int = 25, **stream: Any) -> ModelDeploymentSpec:
    """strategy shadow mirroring `mirror_percent`; a stream shadow needs kafka.shadowTopic."""
    wire = spec(**({"kafka": kafka(shadowTopic=SHADOW_TOPIC)} | stream)).to_wire()
    wire["rollout"] = {"strategy": "shadow", "shadow": {"mirrorPercent": mirror_percent, "duration": "5m"}}
    return ModelDeploymentSpec.model_validate(wire)


def consumer(replicas: int = 2, **stream: Any) -> dict[str, Any]:
    return build_consumer(spec(**stream), OWNER, revision=REV, group="tx-scoring", replicas=replicas, image=IMAGE)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    only: dict[str, Any]
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom of a variable taken from elsewhere."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


# --- the consumer Deployment ----------------------------------------------------------------------------------


def test_the_consumer_env_names_everything_modelserver_stream_needs() -> None:
    env = env_of(consumer(kafka=kafka(), delivery="exactly-once", maxBatch=250, maxMessageBytes=500_000))
    assert env["MODELSERVER_BOOTSTRAP_SERVERS"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert env["MODELSERVER_INPUT_TOPIC"] == "transactions"
    assert env["MODELSERVER_OUTPUT_TOPIC"] == "transaction-scores"
    assert env["MODELSERVER_DEAD_LETTER_TOPIC"] == "transactions-dlq"
    assert env["MODELSERVER_CONSUMER_GROUP"] == "tx-scoring"
    assert env["MODELSERVER_DELIVERY"] == "exactly-once"
    assert env["MODELSERVER_MAX_BATCH"] == "250"
    assert env["MODELSERVER_MAX_MESSAGE_BYTES"] == "500000"
    assert env["MODELSERVER_REVISION"] == REV
    assert env["MODELSERVER_SHARE_CONFIGMAP"] == f"{NAMESPACE}/{NAME}-stream"
    assert env["MODELSERVER_METRICS_PORT"] == "8080"
    assert env["MODELSERVER_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["MODELSERVER_MODEL_NAME"] == "tx-fraud"
    assert env["MODELSERVER_MODEL_VERSION"] == "5"
    assert env["MODELSERVER_MODEL_URI"] == "s3://models/tx-fraud/5/model.onnx"
    assert env["MODELSERVER_MODEL_FORMAT"] == "onnx"
    assert "MODELSERVER_PASSTHROUGH_FIELDS" not in env
    assert "MODELSERVER_THRESHOLD" not in env
    assert not any(name.startswith(("MODELSERVER_SASL", "MODELSERVER_SSL")) for name in env)


def test_options_reach_the_env_only_when_set() -> None:
    env = env_of(consumer(delivery="at-least-once", kafka=kafka(deadLetterTopic=None), passthroughFields=["id", "ts"],
                          threshold=0.35))  # fmt: skip
    assert env["MODELSERVER_DELIVERY"] == "at-least-once"
    assert "MODELSERVER_DEAD_LETTER_TOPIC" not in env
    assert env["MODELSERVER_PASSTHROUGH_FIELDS"] == '["id", "ts"]'
    assert env["MODELSERVER_THRESHOLD"] == "0.35"


def test_sasl_credentials_come_from_the_secret_never_the_spec() -> None:
    env = env_of(consumer(kafka=kafka(sasl=SASL)))
    assert env["MODELSERVER_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["MODELSERVER_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["MODELSERVER_SASL_USERNAME"] == {"secretKeyRef": {"name": "kafka-user", "key": "username"}}
    assert env["MODELSERVER_SASL_PASSWORD"] == {"secretKeyRef": {"name": "kafka-user", "key": "password"}}


@pytest.mark.parametrize("client_certificate", [False, True])
def test_tls_files_are_mounted_from_the_secret(client_certificate: bool) -> None:
    deployment = consumer(kafka=kafka(sasl=SASL, tls={**TLS, "clientCertificate": client_certificate}))
    env = env_of(deployment)
    assert env["MODELSERVER_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["MODELSERVER_SSL_CA_LOCATION"] == f"{TLS_DIR}/ca.crt"
    if client_certificate:
        assert env["MODELSERVER_SSL_CERTIFICATE_LOCATION"] == f"{TLS_DIR}/tls.crt"
        assert env["MODELSERVER_SSL_KEY_LOCATION"] == f"{TLS_DIR}/tls.key"
    else:
        assert "MODELSERVER_SSL_CERTIFICATE_LOCATION" not in env
        assert "MODELSERVER_SSL_KEY_LOCATION" not in env
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "kafka-tls", "secret": {"secretName": "kafka-ca"}} in pod["volumes"]
    assert {"name": "kafka-tls", "mountPath": TLS_DIR, "readOnly": True} in container(deployment)["volumeMounts"]
    assert env_of(consumer(kafka=kafka(tls=TLS)))["MODELSERVER_SECURITY_PROTOCOL"] == "SSL"


def _resolved(deployment: dict[str, Any]) -> dict[str, str]:
    """The env as the kubelet would resolve it (Secrets and the downward API with made-up values)."""
    values = {"username": "scorer", "password": "s3cret", "metadata.name": f"{NAME}-stream-{REV}-7d9f-x2"}
    resolved = {}
    for e in container(deployment)["env"]:
        source = e.get("valueFrom", {})
        key = source.get("secretKeyRef", {}).get("key") or source.get("fieldRef", {}).get("fieldPath")
        resolved[e["name"]] = e["value"] if "value" in e else values[key]
    return resolved


@pytest.mark.parametrize(
    "stream",
    [
        {},
        {"kafka": kafka(sasl=SASL, tls=TLS), "passthroughFields": ["id"], "threshold": 0.5},
        {"kafka": kafka(deadLetterTopic=None), "delivery": "at-least-once", "maxBatch": 1},
    ],
    ids=["defaults", "secured", "at-least-once"],
)
def test_the_consumer_accepts_its_whole_configuration(stream: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the operator writes is exactly what `modelserver stream` reads: no variable it would ignore (its settings
    ignore unknown ones), and settings that validate."""
    env = _resolved(consumer(**stream))
    fields = set(StreamSettings.model_fields)
    unknown = [n for n in env if n.startswith("MODELSERVER_") and n.removeprefix("MODELSERVER_").lower() not in fields]
    assert unknown == []
    for name in list(os.environ):
        if name.startswith("MODELSERVER_") or name in ("POD_NAME", "HOSTNAME"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = StreamSettings()
    assert settings.revision == REV
    assert settings.share_configmap == f"{NAMESPACE}/{NAME}-stream"
    assert settings.instance_id == f"{NAME}-stream-{REV}-7d9f-x2", "static membership from the pod's name"
    assert settings.consumer_group == "tx-scoring"
    assert settings.metrics_port == 8080
    assert settings.key_share() is None, "the share document decides, not a static key range"


SHADOW_ONLY = ("MODELSERVER_COMPARE_TOPIC", "MODELSERVER_KEY_TO", "MODELSERVER_OFFSET_RESET")


def test_a_shadowing_consumer_answers_into_the_shadow_topic_and_compares_with_the_output_topic() -> None:
    deployment = build_consumer(shadowing_spec(25), OWNER, revision=REV, group="tx-scoring-x-shadow", replicas=2,
                                image=IMAGE, shadow=True)  # fmt: skip
    names = [e["name"] for e in container(deployment)["env"]]
    assert names.count("MODELSERVER_OUTPUT_TOPIC") == 1
    assert names.count("MODELSERVER_DEAD_LETTER_TOPIC") == 1
    assert len(names) == len(set(names)), "no variable given twice"
    env = env_of(deployment)
    assert env["MODELSERVER_OUTPUT_TOPIC"] == SHADOW_TOPIC
    assert env["MODELSERVER_DEAD_LETTER_TOPIC"] == SHADOW_TOPIC
    assert env["MODELSERVER_COMPARE_TOPIC"] == "transaction-scores"
    assert env["MODELSERVER_INPUT_TOPIC"] == "transactions"
    assert env["MODELSERVER_KEY_TO"] == "2500"
    assert env["MODELSERVER_OFFSET_RESET"] == "latest"
    assert env["MODELSERVER_CONSUMER_GROUP"] == "tx-scoring-x-shadow"
    assert env["MODELSERVER_REVISION"] == REV
    assert "MODELSERVER_SHARE_CONFIGMAP" not in env, "a shadow holds no share"
    assert "MODELSERVER_KEY_FROM" not in env


@pytest.mark.parametrize(("percent", "key_to"), [(1, "100"), (25, "2500"), (100, "10000")])
def test_a_shadow_scores_the_keys_of_its_mirrored_percent(percent: int, key_to: str) -> None:
    deployment = build_consumer(shadowing_spec(percent), OWNER, revision=REV, group="g", replicas=1, image=IMAGE,
                                shadow=True)  # fmt: skip
    assert env_of(deployment)["MODELSERVER_KEY_TO"] == key_to


def test_a_consumer_that_does_not_shadow_under_strategy_shadow_takes_its_share() -> None:
    env = env_of(build_consumer(shadowing_spec(25), OWNER, revision=REV, group="tx-scoring", replicas=2, image=IMAGE))
    assert env["MODELSERVER_SHARE_CONFIGMAP"] == f"{NAMESPACE}/{NAME}-stream"
    assert env["MODELSERVER_OUTPUT_TOPIC"] == "transaction-scores"
    assert env["MODELSERVER_DEAD_LETTER_TOPIC"] == "transactions-dlq"
    assert not any(name in env for name in SHADOW_ONLY)


def test_a_shadowing_consumer_accepts_its_whole_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = build_consumer(shadowing_spec(25), OWNER, revision=REV, group="tx-scoring-x-shadow", replicas=2,
                                image=IMAGE, shadow=True)  # fmt: skip
    env = _resolved(deployment)
    fields = set(StreamSettings.model_fields)
    assert [
        n for n in env if n.startswith("MODELSERVER_") and n.removeprefix("MODELSERVER_").lower() not in fields
    ] == []
    for name in list(os.environ):
        if name.startswith("MODELSERVER_") or name in ("POD_NAME", "HOSTNAME"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = StreamSettings()
    assert (settings.output_topic, settings.dead_letter_topic) == (SHADOW_TOPIC, SHADOW_TOPIC)
    assert (settings.compare_topic, settings.offset_reset) == ("transaction-scores", "latest")
    assert settings.key_share() == (0, 2500)
    assert settings.share_configmap is None
    assert settings.consumer_group == "tx-scoring-x-shadow"


def test_a_shadows_group_is_its_own_group_marked_and_at_most_255_characters() -> None:
    assert shadow_group_of("tx-scoring-bbbb0002") == "tx-scoring-bbbb0002-shadow"
    longest = shadow_group_of("g" * 255)
    assert len(longest) == 255
    assert longest.endswith("-shadow")


def test_the_consumer_pod_runs_modelserver_stream_as_its_own_service_account() -> None:
    deployment = consumer()
    assert deployment["metadata"]["name"] == f"{NAME}-stream-{REV}" == consumer_name(NAME, REV)
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == UID
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    labels = {LABEL_NAME: NAME, LABEL_MODE: "stream", LABEL_REVISION: REV}
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert revision_of_object(deployment) == REV
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{NAME}-stream"
    c = container(deployment)
    assert c["image"] == IMAGE
    assert c["args"] == ["stream"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError", "why it stopped reaches the revision's status"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8080"


def test_replicas_are_always_the_ones_given() -> None:
    # Under autoscaling the plan passes what KEDA's HPA last set (at least the floor): applying it never fights it.
    assert consumer(replicas=5)["spec"]["replicas"] == 5, "examples/stream.yaml autoscales"
    fixed = build_consumer(spec(autoscaling=None, replicas=3), OWNER, revision=REV, group="g", replicas=3, image=IMAGE)
    assert fixed["spec"]["replicas"] == 3


def test_the_users_env_comes_last_so_it_may_override_ours() -> None:
    resource = spec()
    wire = resource.to_wire()
    wire["model"]["env"] = [{"name": "MODELSERVER_MAX_WAIT_MS", "value": "5"}]
    changed = type(resource).model_validate(wire)
    deployment = build_consumer(changed, OWNER, revision=REV, group="g", replicas=1, image=IMAGE)
    assert container(deployment)["env"][-1] == {"name": "MODELSERVER_MAX_WAIT_MS", "value": "5"}


def test_a_rebuilt_consumer_keeps_the_stored_template_and_size() -> None:
    stored = consumer()
    stored["spec"]["replicas"] = 4  # as KEDA left it
    stored["status"] = {"readyReplicas": 4}
    rebuilt = rebuild_consumer(stored, OWNER, revision=REV)
    assert rebuilt["spec"]["template"] == stored["spec"]["template"]
    assert rebuilt["spec"]["replicas"] == 4
    assert rebuilt["spec"]["strategy"] == {"type": "Recreate"}
    assert "status" not in rebuilt
    del stored["spec"]["replicas"]
    assert "replicas" not in rebuild_consumer(stored, OWNER, revision=REV)["spec"]


# --- consumer groups, the share document and access to it -----------------------------------------------------


def test_the_first_revision_consumes_as_the_spec_group_and_later_ones_in_their_own() -> None:
    stream = spec().stream
    assert stream is not None
    assert group_for(stream, OWNER, "aaaa0001", first="aaaa0001") == "tx-scoring"
    assert group_for(stream, OWNER, "bbbb0002", first="aaaa0001") == "tx-scoring-bbbb0002"
    defaulted = spec(kafka=kafka(consumerGroup=None)).stream
    assert defaulted is not None
    assert group_for(defaulted, OWNER, "aaaa0001", first="aaaa0001") == f"{NAMESPACE}.{NAME}"
    assert group_for(defaulted, OWNER, "bbbb0002", first="aaaa0001") == f"{NAMESPACE}.{NAME}-bbbb0002"
    longest = spec(kafka=kafka(consumerGroup="g" * 255)).stream
    assert longest is not None
    assert len(group_for(longest, OWNER, "bbbb0002", first="aaaa0001")) == 255


def test_the_share_configmap_holds_a_document_the_consumers_accept() -> None:
    a, b = ref("5"), ref("6")
    share = StreamShare(epoch=3, leader=a, follower=b, percent=40)
    groups = {a.revision: "tx-scoring", b.revision: f"tx-scoring-{b.revision}"}
    configmap = build_share_configmap(OWNER, document_of(share, groups))
    assert configmap["metadata"]["name"] == f"{NAME}-stream" == share_name(NAME)
    assert configmap["metadata"]["labels"][LABEL_MODE] == "stream"
    document = parse_document(configmap["data"][CONFIG_KEY])
    assert document.epoch == 3
    assert (document.leader.revision, document.leader.group) == (a.revision, "tx-scoring")
    assert document.follower is not None
    assert (document.follower.revision, document.follower.group) == (b.revision, f"tx-scoring-{b.revision}")
    assert (document.percent, document.final) == (40, False)
    alone = parse_document(build_share_configmap(OWNER, document_of(StreamShare(epoch=4, leader=b), groups))["data"][
        CONFIG_KEY
    ])  # fmt: skip
    assert (alone.leader.group, alone.follower) == (f"tx-scoring-{b.revision}", None)


def test_the_consumers_may_read_configmaps_and_nothing_else() -> None:
    account, role, binding = build_access(OWNER)
    assert [o["kind"] for o in (account, role, binding)] == ["ServiceAccount", "Role", "RoleBinding"]
    assert {o["metadata"]["name"] for o in (account, role, binding)} == {f"{NAME}-stream"}
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{NAME}-stream"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{NAME}-stream", "namespace": NAMESPACE}]


# --- KEDA and the PDB -----------------------------------------------------------------------------------------


def test_a_scaled_object_scales_the_revisions_consumers_on_their_groups_lag() -> None:
    stream = spec(autoscaling={"minReplicas": 2, "maxReplicas": 8, "lagThreshold": 1000}).stream
    assert stream is not None
    scaled = build_scaled_object(stream, OWNER, revision=REV, group=f"tx-scoring-{REV}")
    assert scaled is not None
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["name"] == consumer_name(NAME, REV)
    assert scaled["spec"]["scaleTargetRef"] == {"name": consumer_name(NAME, REV)}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 8)
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    assert metadata["bootstrapServers"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert metadata["consumerGroup"] == f"tx-scoring-{REV}"
    assert metadata["topic"] == "transactions"
    assert metadata["lagThreshold"] == "1000"
    assert metadata["allowIdleConsumers"] == "false"
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA's trigger metadata is strings only"


def test_no_scaled_object_without_autoscaling() -> None:
    stream = spec(autoscaling=None).stream
    assert stream is not None
    assert build_scaled_object(stream, OWNER, revision=REV, group="g") is None


@pytest.mark.parametrize(
    ("stream", "pdb"),
    [
        ({"autoscaling": None, "replicas": 1}, False),
        ({"autoscaling": None, "replicas": 2}, True),
        ({"autoscaling": {"minReplicas": 1, "maxReplicas": 8}}, False),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 8}}, True),
    ],
)
def test_a_pdb_only_above_one_consumer(stream: dict[str, Any], pdb: bool) -> None:
    settings = spec(**stream).stream
    assert settings is not None
    built = build_pdb(settings, OWNER, revision=REV)
    assert (built is not None) == pdb
    if built is not None:
        assert built["metadata"]["name"] == consumer_name(NAME, REV)
        assert built["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {LABEL_NAME: NAME, LABEL_MODE: "stream", LABEL_REVISION: REV}},
        }
