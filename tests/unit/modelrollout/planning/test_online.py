from __future__ import annotations

from typing import Any

import pytest
from testkit.manifests import load_example

from modelrollout.api.resource import ModelDeployment
from modelrollout.planning.names import ANNOTATION_REPLICAS, LABEL_MODE, LABEL_NAME, LABEL_REVISION, LABEL_ROLE
from modelrollout.planning.online import (
    HTTP_PORT,
    Owner,
    build_deployment,
    build_hpa,
    build_pdb,
    build_services,
    model_server_env,
    rebuild_deployment,
)

OWNER = Owner(name="churn", namespace="ml", uid="1234-uid")
IMAGE = "registry.example/model-server:1"


def spec_of(example: str, **online: Any) -> Any:
    body = load_example(example)
    if online:
        body["spec"]["online"] = online
    return ModelDeployment.model_validate(body).spec


def deployment(example: str = "online-canary-router.yaml", replicas: int = 3, **online: Any) -> dict[str, Any]:
    return build_deployment(
        spec_of(example, **online),
        OWNER,
        revision="abcd1234",
        replicas=replicas,
        image_default=IMAGE,
        progress_deadline_s=120,
    )


def env_of(obj: dict[str, Any]) -> dict[str, str]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "<from>") for e in container["env"]}


def test_deployment_is_named_by_revision_and_owned() -> None:
    d = deployment()
    assert d["metadata"]["name"] == "churn-abcd1234"
    assert d["metadata"]["namespace"] == "ml"
    assert d["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "modelrollout.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "churn",
            "uid": "1234-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = {LABEL_NAME: "churn", LABEL_MODE: "online", LABEL_REVISION: "abcd1234"}
    assert d["spec"]["selector"] == {"matchLabels": labels}
    assert labels.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    assert d["spec"]["progressDeadlineSeconds"] == 120


def test_pod_runs_the_model_server_with_model_settings_in_env() -> None:
    env = env_of(deployment())
    assert env["MODELSERVER_MODEL_NAME"] == "churn"
    assert env["MODELSERVER_MODEL_VERSION"] == "7"
    assert env["MODELSERVER_MODEL_URI"] == "s3://models/churn/7/model.joblib"
    assert env["MODELSERVER_MODEL_FORMAT"] == "sklearn"
    assert "MODELSERVER_BATCHING" not in env
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["args"] == ["serve"]
    assert container["ports"] == [
        {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert env_of(deployment())["MODELSERVER_GRPC_PORT"] == "8081"
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}


def test_custom_class_batching_and_user_env_reach_the_server() -> None:
    spec = spec_of("hybrid.yaml")
    env = model_server_env(spec)
    names = [e["name"] for e in env]
    assert {"name": "MODELSERVER_BATCHING", "value": "true"} in env
    assert {"name": "MODELSERVER_MAX_BATCH_SIZE", "value": "64"} in env
    assert {"name": "MODELSERVER_MAX_BATCH_WAIT_MS", "value": "2"} in env
    # User variables last, so they can override ours; valueFrom is passed through intact.
    assert names[-2:] == ["MODELSERVER_LOG_LEVEL", "AWS_ACCESS_KEY_ID"]
    assert env[-1]["valueFrom"] == {"secretKeyRef": {"name": "model-store", "key": "access-key"}}
    custom = model_server_env(spec_of("istio.yaml"))
    assert {"name": "MODELSERVER_MODEL_CLASS", "value": "ranking.model:Ranker"} in custom


def test_probes_hit_the_v2_health_endpoints() -> None:
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}


def test_pods_are_locked_down_and_scraped() -> None:
    template = deployment()["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/var/run/modelserver"} <= mounts, "a read-only root needs writable scratch space"
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }


def test_replicas_are_ours_only_without_an_autoscaler() -> None:
    plain = deployment("online-direct.yaml", replicas=3)
    assert plain["spec"]["replicas"] == 3
    assert plain["metadata"]["annotations"] == {ANNOTATION_REPLICAS: "3"}, "the rollout's ask, kept on the object"
    scaled = deployment(replicas=2, autoscaling={"minReplicas": 2, "maxReplicas": 5})
    assert "replicas" not in scaled["spec"], "applying replicas would fight the HPA"
    retired = deployment(replicas=0, autoscaling={"minReplicas": 2, "maxReplicas": 5})
    assert retired["spec"]["replicas"] == 0, "no HPA holds a revision at zero, so zero is ours"


def test_a_revision_the_spec_no_longer_describes_keeps_its_stored_pod_template() -> None:
    stored = deployment(replicas=3)
    stored["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/model-server:0"
    rebuilt = rebuild_deployment(
        stored, OWNER, revision="abcd1234", replicas=0, autoscaled=False, progress_deadline_s=9
    )
    assert rebuilt["spec"]["template"] == stored["spec"]["template"]
    assert (rebuilt["spec"]["replicas"], rebuilt["spec"]["progressDeadlineSeconds"]) == (0, 9)
    assert rebuilt["metadata"]["name"] == "churn-abcd1234"
    with pytest.raises(ValueError, match="no pod template"):
        rebuild_deployment({}, OWNER, revision="r", replicas=1, autoscaled=False, progress_deadline_s=9)


def test_services_select_one_revision_each() -> None:
    main, stable, canary = build_services(OWNER, stable="aaaa0000", canary="bbbb1111", main="aaaa0000")
    assert [s["metadata"]["name"] for s in (main, stable, canary)] == ["churn", "churn-stable", "churn-canary"]
    assert [s["metadata"]["labels"][LABEL_ROLE] for s in (main, stable, canary)] == ["main", "stable", "canary"]
    assert main["spec"]["selector"][LABEL_REVISION] == "aaaa0000"
    assert canary["spec"]["selector"][LABEL_REVISION] == "bbbb1111"
    assert main["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
    ]


def test_a_service_in_front_of_our_router_has_no_grpc_port() -> None:
    main, stable, _ = build_services(OWNER, stable="aaaa0000", canary="bbbb1111", main="aaaa0000", router=True)
    assert [p["name"] for p in main["spec"]["ports"]] == ["http"], "the router proxies HTTP only"
    assert [p["name"] for p in stable["spec"]["ports"]] == ["http", "grpc"]


def test_the_main_service_can_span_revisions_and_blue_green_gets_a_preview() -> None:
    main, *_, preview = build_services(OWNER, stable="aaaa0000", canary="bbbb1111", main=None, preview=True)
    assert main["spec"]["selector"] == {LABEL_NAME: "churn", LABEL_MODE: "online"}
    assert preview["metadata"]["name"] == "churn-preview"
    assert preview["spec"]["selector"][LABEL_REVISION] == "bbbb1111"


def test_hpa_per_running_revision_only_when_asked() -> None:
    assert build_hpa(spec_of("online-direct.yaml"), OWNER, revision="r1", replicas=1) is None
    assert build_hpa(spec_of("online-canary-router.yaml"), OWNER, revision="r1", replicas=0) is None
    floor = build_hpa(spec_of("online-canary-router.yaml"), OWNER, revision="r1", replicas=1)
    assert floor is not None
    assert floor["spec"]["minReplicas"] == 1, "a canary step's pods are the HPA's floor"
    hpa = build_hpa(spec_of("online-canary-router.yaml"), OWNER, revision="r1", replicas=2)
    assert hpa is not None
    assert hpa["metadata"]["name"] == "churn-r1"
    assert hpa["metadata"]["labels"][LABEL_REVISION] == "r1"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn-r1"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


@pytest.mark.parametrize(
    ("online", "expected"),
    [
        ({"replicas": 1}, False),
        ({"replicas": 2}, True),
        ({"autoscaling": {"minReplicas": 1, "maxReplicas": 4}}, False),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 4}}, True),
    ],
)
def test_pdb_only_when_more_than_one_pod_is_guaranteed(online: dict[str, Any], expected: bool) -> None:
    pdb = build_pdb(spec_of("online-direct.yaml", **online), OWNER)
    assert (pdb is not None) == expected
    if pdb:
        assert pdb["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {LABEL_NAME: "churn", LABEL_MODE: "online"}},
        }


def test_build_deployment_refuses_a_spec_without_online() -> None:
    with pytest.raises(ValueError, match=r"spec\.online"):
        build_deployment(
            spec_of("batch.yaml"), OWNER, revision="r", replicas=1, image_default=IMAGE, progress_deadline_s=60
        )
