"""From a pod's container to a local process: Kubernetes' rules for command/args/env/volumes, as the local
kubelet applies them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from testkit.kubelet.containers import (
    ContainerConfigError,
    UnknownImage,
    container_env,
    entry_point,
    expand,
    launch,
    referenced,
    repository,
    rewrite_path,
    volume_files,
)

IMAGES = {"model-server": ["/venv/bin/python", "-m", "modelserver"], "ghcr.io/acme/tool": ["/opt/tool"]}
POD_DIR = Path("/work/pods/ns_p_1234")


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "a"}},
        "spec": {"nodeName": "local", "containers": [container], **spec},
        "status": {"podIP": "10.201.0.7"},
    }


def no_sources(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return None


def sources(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    known = {("secret", "creds"): {"key": "s3cr3t"}, ("configmap", "conf"): {"A": "1", "B": "2"}}
    return known.get((kind, name))


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("ghcr.io/modelrollout/model-server:0.1.0", "ghcr.io/modelrollout/model-server"),
        ("localhost:5000/model-server", "localhost:5000/model-server"),
        ("model-server@sha256:abc", "model-server"),
        ("registry:5000/a/b:1.2@sha256:abc", "registry:5000/a/b"),
    ],
)
def test_repository_drops_tag_and_digest_not_a_registry_port(image: str, repo: str) -> None:
    assert repository(image) == repo


def test_entry_point_by_repository_then_by_its_last_part() -> None:
    assert entry_point("ghcr.io/acme/tool:2", IMAGES) == ["/opt/tool"]
    assert entry_point("ghcr.io/modelrollout/model-server:0.1.0", IMAGES) == IMAGES["model-server"]
    with pytest.raises(UnknownImage, match="'busybox:1' has no local entry point"):
        entry_point("busybox:1", IMAGES)


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)", env) == "x-y"
    assert expand("$(MISSING)", env) == "$(MISSING)"  # left as is
    assert expand("$$(A)", env) == "$(A)"  # escaped


def test_env_in_order_with_downward_api_sources_and_envfrom() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "conf"}, "prefix": "C_"}],
        "env": [
            {"name": "FIRST", "value": "one"},
            {"name": "SECOND", "value": "$(FIRST)-two"},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "key"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        ],
    }
    env = container_env(pod(container), container, sources)
    assert env == {
        "C_A": "1",
        "C_B": "2",
        "FIRST": "one",
        "SECOND": "one-two",
        "IP": "10.201.0.7",
        "APP": "a",
        "KEY": "s3cr3t",
    }


def test_a_missing_secret_is_a_config_error_naming_it() -> None:
    container = {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]}
    with pytest.raises(ContainerConfigError, match="secret ns/creds has no key 'nope'"):
        container_env(pod(container), container, sources)


def test_launch_replaces_entry_point_with_command_and_rewrites_mount_paths() -> None:
    container = {
        "name": "c",
        "image": "model-server:1",
        "args": ["serve", "--cache", "/models/cache"],
        "env": [{"name": "MODELSERVER_DOWNLOAD_DIR", "value": "/models"}, {"name": "URI", "value": "file:///models/x"}],
        "volumeMounts": [{"name": "models", "mountPath": "/models"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    spec = {"volumes": [{"name": "models", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}
    found = launch(pod(container, **spec), container, images=IMAGES, pod_dir=POD_DIR, read=no_sources, base_env={})
    models = POD_DIR / "volumes" / "models"
    assert found.argv == ["/venv/bin/python", "-m", "modelserver", "serve", "--cache", f"{models}/cache"]
    assert found.env["MODELSERVER_DOWNLOAD_DIR"] == str(models)
    assert found.env["URI"] == "file:///models/x"  # not a path: a URI is the user's business
    assert found.env["TMPDIR"] == str(POD_DIR / "volumes" / "tmp")
    assert found.env["HOSTNAME"] == "p"
    assert found.cwd == POD_DIR / "root"

    with_command = {**container, "command": ["python", "-c", "$(URI)"], "args": []}
    found = launch(
        pod(with_command, **spec), with_command, images=IMAGES, pod_dir=POD_DIR, read=no_sources, base_env={}
    )
    assert found.argv == ["python", "-c", "file:///models/x"]


def test_an_unknown_image_fails_even_with_a_command() -> None:
    container = {"name": "c", "image": "busybox", "command": ["sh"]}
    with pytest.raises(UnknownImage):
        launch(pod(container), container, images=IMAGES, pod_dir=POD_DIR, read=no_sources, base_env={})


def test_unsupported_volumes_are_refused_by_name() -> None:
    container = {"name": "c", "image": "model-server", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    spec = {"volumes": [{"name": "data", "hostPath": {"path": "/srv"}}]}
    with pytest.raises(ContainerConfigError, match="volume 'data': \\['hostPath'\\] is not supported"):
        launch(pod(container, **spec), container, images=IMAGES, pod_dir=POD_DIR, read=no_sources, base_env={})


def test_rewrite_path_takes_the_longest_mount() -> None:
    where = {"/data": Path("/d"), "/data/cache": Path("/c")}
    assert rewrite_path("/data/cache/x", where) == "/c/x"
    assert rewrite_path("/data/x", where) == "/d/x"
    assert rewrite_path("/database", where) == "/database"


def test_projected_service_account_volume_and_what_it_references() -> None:
    volume = {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"configMap": {"name": "conf", "items": [{"key": "A", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }
    the_pod = pod(
        {"name": "c", "image": "model-server"}, volumes=[volume, {"name": "s", "secret": {"secretName": "creds"}}]
    )
    assert volume_files(the_pod, volume, sources, "tok") == {"token": "tok", "ca.crt": "1", "namespace": "ns"}
    assert volume_files(the_pod, the_pod["spec"]["volumes"][1], sources, "tok") == {"key": "s3cr3t"}
    assert referenced(the_pod) == {("configmap", "conf"), ("secret", "creds")}
