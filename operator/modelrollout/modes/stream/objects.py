"""The objects of stream inference (pure): per running revision a consumer Deployment `<name>-stream-<revision>`
(`modelserver stream`, its whole configuration in MODELSERVER_* variables) and, under stream.autoscaling, a KEDA
ScaledObject scaling it on its consumer group's lag; the share document's ConfigMap `<name>-stream`; the
consumers' ServiceAccount with a Role to read it; a PodDisruptionBudget per Deployment of more than one pod.

Consumer groups: the first revision a ModelDeployment runs consumes as spec.stream.kafka.consumerGroup (default
`<namespace>.<name>`); every later revision as `<that group>-<revision>`, its own group, since both revisions of a
rollout read every partition. A promoted revision keeps its group (moving consumers to another group would stop
them and need its offsets copied): status.stream.group names the serving one.

A shadowing candidate (rollout.strategy shadow) runs in a group of its own, `<its group>-shadow`, from the topic's
end (it compares live records, it does not score the topic's history), takes no part in the share document, scores
its mirrored share of the keys (rollout.shadow.mirrorPercent) into kafka.shadowTopic (its dead letters too, with
their reason header) and compares each answer with the output topic's for the same input partition and offset
(modelserver.stream.comparing). Promoted, it is rebuilt as a follower in its own group, which the hand-over needs:
its shadow group's offsets are past records the output topic still needs from it.
"""

from __future__ import annotations

import json
from typing import Any

from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import StreamShare
from modelrollout.api.workloads import StreamSpec
from modelrollout.planning.names import LABEL_REVISION, MANAGED_BY, selector
from modelrollout.planning.online import (
    HTTP_PORT,
    LOCKED_DOWN_CONTAINER,
    LOCKED_DOWN_POD,
    MODEL_DIR,
    SCRAPED,
    Owner,
    model_env,
)
from modelrollout.planning.placement import place
from modelrollout_contract.sticky import BUCKETS
from modelrollout_contract.stream import CONFIG_KEY, Member, ShareDocument, to_document

CONTAINER = "consumer"
TLS_DIR = "/etc/modelrollout/kafka-tls"
# A consumer that stops (SIGTERM) finishes its batch and commits; its transaction times out after 60 s at most.
GRACE_S = 90


def consumer_name(name: str, revision: str) -> str:
    return f"{name}-stream-{revision}"


def share_name(name: str) -> str:
    """`<name>-stream`: the share document's ConfigMap, and the consumers' ServiceAccount, Role and RoleBinding."""
    return f"{name}-stream"


def group_for(stream: StreamSpec, owner: Owner, revision: str, *, first: str) -> str:
    base = stream.group_of(owner.namespace, owner.name)
    return base if revision == first else f"{base}-{revision}"[:255]


def shadow_group_of(group: str) -> str:
    return f"{group[:248]}-shadow"


def document_of(share: StreamShare, groups: dict[str, str]) -> ShareDocument:
    follower = share.follower
    return ShareDocument(
        epoch=share.epoch,
        leader=Member(revision=share.leader.revision, group=groups[share.leader.revision]),
        follower=Member(revision=follower.revision, group=groups[follower.revision]) if follower else None,
        percent=share.percent,
        final=share.final,
    )


def build_share_configmap(owner: Owner, document: ShareDocument) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.metadata(share_name(owner.name), selector(owner.name, "stream")),
        "data": {CONFIG_KEY: to_document(document)},
    }


def build_access(owner: Owner) -> list[dict[str, Any]]:
    """The consumers' identity: they list+watch their share document (namespace-wide read of ConfigMaps, as for
    the router: RBAC cannot narrow list/watch to one name on every API server we support)."""
    name, labels = share_name(owner.name), selector(owner.name, "stream")
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": owner.metadata(name, labels)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": owner.metadata(name, labels),
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": owner.metadata(name, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
        },
    ]


def _kafka_env(stream: StreamSpec) -> list[dict[str, Any]]:
    kafka = stream.kafka
    env: list[dict[str, Any]] = [
        {"name": "MODELSERVER_BOOTSTRAP_SERVERS", "value": kafka.bootstrap_servers},
        {"name": "MODELSERVER_INPUT_TOPIC", "value": kafka.input_topic},
        {"name": "MODELSERVER_OUTPUT_TOPIC", "value": kafka.output_topic},
    ]
    if kafka.dead_letter_topic:
        env.append({"name": "MODELSERVER_DEAD_LETTER_TOPIC", "value": kafka.dead_letter_topic})
    protocol = ("SASL_" if kafka.sasl else "") + ("SSL" if kafka.tls else "PLAINTEXT")
    env.append({"name": "MODELSERVER_SECURITY_PROTOCOL", "value": protocol})
    if kafka.sasl:
        secret = kafka.sasl.secret_name
        env += [
            {"name": "MODELSERVER_SASL_MECHANISM", "value": kafka.sasl.mechanism},
            {"name": "MODELSERVER_SASL_USERNAME", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
            {"name": "MODELSERVER_SASL_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        ]
    if kafka.tls:
        env.append({"name": "MODELSERVER_SSL_CA_LOCATION", "value": f"{TLS_DIR}/ca.crt"})
        if kafka.tls.client_certificate:
            env += [
                {"name": "MODELSERVER_SSL_CERTIFICATE_LOCATION", "value": f"{TLS_DIR}/tls.crt"},
                {"name": "MODELSERVER_SSL_KEY_LOCATION", "value": f"{TLS_DIR}/tls.key"},
            ]
    return env


def _shadow_env(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """A shadow's topics and share: its answers (and dead letters) into the shadow topic, compared with the output
    topic's; the keys of its mirrored percent; from the topic's end when its group is new."""
    stream, shadow = spec.stream, spec.rollout.shadow
    assert stream is not None
    assert stream.kafka.shadow_topic is not None  # the spec's rule for a stream shadow
    percent = shadow.mirror_percent if shadow is not None else 100
    return [
        {"name": "MODELSERVER_OUTPUT_TOPIC", "value": stream.kafka.shadow_topic},
        {"name": "MODELSERVER_DEAD_LETTER_TOPIC", "value": stream.kafka.shadow_topic},
        {"name": "MODELSERVER_COMPARE_TOPIC", "value": stream.kafka.output_topic},
        {"name": "MODELSERVER_KEY_TO", "value": str(percent * BUCKETS // 100)},
        {"name": "MODELSERVER_OFFSET_RESET", "value": "latest"},
    ]


def _env(spec: ModelDeploymentSpec, owner: Owner, revision: str, group: str, *, shadow: bool) -> list[dict[str, Any]]:
    stream = spec.stream
    assert stream is not None
    kafka = _kafka_env(stream)
    if shadow:
        replaced = {"MODELSERVER_OUTPUT_TOPIC", "MODELSERVER_DEAD_LETTER_TOPIC"}
        kafka = [e for e in kafka if e["name"] not in replaced] + _shadow_env(spec)
        share = []
    else:
        share = [{"name": "MODELSERVER_SHARE_CONFIGMAP", "value": f"{owner.namespace}/{share_name(owner.name)}"}]
    env = [
        *model_env(spec.model),
        {"name": "MODELSERVER_DOWNLOAD_DIR", "value": MODEL_DIR},
        *kafka,
        {"name": "MODELSERVER_CONSUMER_GROUP", "value": group},
        {"name": "MODELSERVER_DELIVERY", "value": stream.delivery},
        {"name": "MODELSERVER_MAX_BATCH", "value": str(stream.max_batch)},
        {"name": "MODELSERVER_MAX_MESSAGE_BYTES", "value": str(stream.max_message_bytes)},
        {"name": "MODELSERVER_REVISION", "value": revision},
        *share,
        {"name": "MODELSERVER_METRICS_PORT", "value": str(HTTP_PORT)},
        # Static membership and the transactional id: stable across a container's restarts.
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if stream.passthrough_fields:
        env.append({"name": "MODELSERVER_PASSTHROUGH_FIELDS", "value": json.dumps(stream.passthrough_fields)})
    if stream.threshold is not None:
        env.append({"name": "MODELSERVER_THRESHOLD", "value": f"{stream.threshold:g}"})
    env += [e.to_wire() for e in spec.model.env]  # the user's last: they may override ours
    return env


def build_consumer(
    spec: ModelDeploymentSpec,
    owner: Owner,
    *,
    revision: str,
    group: str,
    replicas: int,
    image: str,
    shadow: bool = False,
) -> dict[str, Any]:
    """The Deployment of `revision`'s consumers (`shadow`: shadowing, see the module). Recreate, not a rolling
    update: two pods of one revision with the same group never need to overlap, and static membership hands a
    restarted pod its partitions back.
    `replicas`: under autoscaling, what KEDA's HPA last set (never below the floor), so applying it does not
    fight the autoscaler, and a revision whose HPA does not run yet still gets its floor."""
    stream = spec.stream
    assert stream is not None
    labels = selector(owner.name, "stream", revision)
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 3,
             "timeoutSeconds": 2}  # fmt: skip
    mounts: list[dict[str, Any]] = [{"name": "models", "mountPath": MODEL_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "models", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    if stream.kafka.tls:
        mounts.append({"name": "kafka-tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append({"name": "kafka-tls", "secret": {"secretName": stream.kafka.tls.secret_name}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "args": ["stream"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _env(spec, owner, revision, group, shadow=shadow),
        "readinessProbe": probe,
        # A consumer that stops on an error says why in its last log line: it reaches StreamReady and the
        # revision's failure through the termination message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": LOCKED_DOWN_CONTAINER,
        "volumeMounts": mounts,
    }
    if spec.model.resources:
        container["resources"] = spec.model.resources.to_wire()
    template = place(
        {
            "metadata": {"labels": {**MANAGED_BY, **labels}, "annotations": dict(SCRAPED)},
            "spec": {
                "serviceAccountName": share_name(owner.name),
                "containers": [container],
                "securityContext": LOCKED_DOWN_POD,
                "terminationGracePeriodSeconds": GRACE_S,
                "volumes": volumes,
            },
        },
        spec.pod,
        model_pods=True,
    )
    # The consumers must read their share document: they run as <name>-stream, whom our Role binds, whatever
    # spec.pod.serviceAccountName says (that account is the model servers'; credentials reach the consumers as
    # Secrets in their env).
    template["spec"]["serviceAccountName"] = share_name(owner.name)
    return _consumer_deployment(owner, revision, template, replicas)


def rebuild_consumer(stored: dict[str, Any], owner: Owner, *, revision: str) -> dict[str, Any]:
    """The Deployment of a revision the spec no longer describes (the old leader during a hand-over): its pod
    template and size as stored, since the spec that made them is gone."""
    spec = stored.get("spec", {})
    return _consumer_deployment(owner, revision, spec["template"], spec.get("replicas"))


def _consumer_deployment(owner: Owner, revision: str, template: dict[str, Any], replicas: int | None) -> dict[str, Any]:
    labels = selector(owner.name, "stream", revision)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(consumer_name(owner.name, revision), labels),
        "spec": {
            "selector": {"matchLabels": labels},
            "revisionHistoryLimit": 1,
            "strategy": {"type": "Recreate"},
            "template": template,
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def build_scaled_object(stream: StreamSpec, owner: Owner, *, revision: str, group: str) -> dict[str, Any] | None:
    """KEDA's Kafka scaler on the revision's consumer group: one more consumer per lagThreshold records behind,
    never more consumers than partitions (allowIdleConsumers false: an idle member only rebalances)."""
    scaling = stream.autoscaling
    if scaling is None:
        return None
    kafka = stream.kafka
    metadata: dict[str, str] = {
        "bootstrapServers": kafka.bootstrap_servers,
        "consumerGroup": group,
        "topic": kafka.input_topic,
        "lagThreshold": str(scaling.lag_threshold),
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
    }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": owner.metadata(consumer_name(owner.name, revision), selector(owner.name, "stream", revision)),
        "spec": {
            "scaleTargetRef": {"name": consumer_name(owner.name, revision)},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "triggers": [{"type": "kafka", "metadata": metadata}],
        },
    }


def build_pdb(stream: StreamSpec, owner: Owner, *, revision: str) -> dict[str, Any] | None:
    """One consumer of a revision down at a time through voluntary disruptions (a drain), when it runs more."""
    least = stream.autoscaling.min_replicas if stream.autoscaling else stream.replicas
    if least <= 1:
        return None
    labels = selector(owner.name, "stream", revision)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": owner.metadata(consumer_name(owner.name, revision), labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
    }


def revision_of_object(obj: dict[str, Any]) -> str | None:
    revision = obj.get("metadata", {}).get("labels", {}).get(LABEL_REVISION)
    return str(revision) if revision is not None else None
