"""The local kubelet's stand-ins for kube-proxy and cluster DNS."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from testkit.kubelet.services import table

SHIM = Path(__file__).resolve().parents[4] / "testkit" / "kubelet" / "shim" / "sitecustomize.py"


@pytest.fixture(scope="module")
def shim() -> ModuleType:
    """The shim's module without installing it (it installs only when LOCAL_KUBELET_POD_IP is set)."""
    spec = importlib.util.spec_from_file_location("kubelet_shim", SHIM)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def service(name: str, *ports: tuple[str, int]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"ports": [{"name": n, "port": p, "targetPort": n} for n, p in ports]},
    }


def endpoint_slice(owner: str, *endpoints: tuple[str, bool | None], port: int = 8080) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": f"{owner}-x", "labels": {"kubernetes.io/service-name": owner}},
        "ports": [{"name": "http", "port": port}],
        "endpoints": [
            {"addresses": [ip], **({} if ready is None else {"conditions": {"ready": ready}})}
            for ip, ready in endpoints
        ],
    }


def test_table_lists_ready_endpoints_with_their_target_ports() -> None:
    found = table(
        [service("churn", ("http", 80)), service("empty", ("http", 80))],
        [endpoint_slice("churn", ("10.1.0.3", True), ("10.1.0.2", None), ("10.1.0.4", False))],
    )
    assert found["services"]["ns/churn"] == {
        "ports": {"80": "http"},
        "endpoints": [{"ip": "10.1.0.2", "ports": {"http": 8080}}, {"ip": "10.1.0.3", "ports": {"http": 8080}}],
    }
    assert found["services"]["ns/empty"]["endpoints"] == []


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("churn", "ns/churn"),
        ("churn.other", "other/churn"),
        ("churn.other.svc", "other/churn"),
        ("churn.other.svc.cluster.local", "other/churn"),
        ("churn.other.svc.cluster.local.", "other/churn"),
        ("example.com.au.x", None),
        ("", None),
    ],
)
def test_service_names_as_cluster_dns_answers_them(shim: ModuleType, host: str, key: str | None) -> None:
    assert shim.service_key(host, "ns") == key


def test_lookup_translates_the_service_port_and_fails_without_endpoints(shim: ModuleType) -> None:
    known = table(
        [service("churn", ("http", 80)), service("empty", ("http", 80))],
        [endpoint_slice("churn", ("10.1.0.2", True), ("10.1.0.3", True))],
    )
    first = lambda endpoints: endpoints[0]  # noqa: E731
    assert shim.lookup(known, "churn.ns.svc", 80, "ns", first) == ("10.1.0.2", 8080)
    assert shim.lookup(known, "churn", "80", "ns", first) == ("10.1.0.2", 8080)
    assert shim.lookup(known, "example.com", 80, "ns", first) is None
    with pytest.raises(socket.gaierror, match="no ready endpoints"):
        shim.lookup(known, "empty", 80, "ns", first)
    with pytest.raises(socket.gaierror, match="has no port 81"):
        shim.lookup(known, "churn", 81, "ns", first)


def test_the_termination_message_path_is_the_containers_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins  # noqa: PLC0415
    import io  # noqa: PLC0415

    own = tmp_path / "own.termination-log"
    monkeypatch.setenv("LOCAL_KUBELET_TERMINATION_PATH", str(tmp_path / "dev-termination-log"))
    monkeypatch.setenv("LOCAL_KUBELET_TERMINATION_LOG", str(own))
    monkeypatch.setattr(builtins, "open", builtins.open)  # restored after the test, as io.open below
    monkeypatch.setattr(io, "open", io.open)
    spec = importlib.util.spec_from_file_location("kubelet_shim_termination", SHIM)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._install_termination_log()

    (tmp_path / "dev-termination-log").write_text("done")  # what the program writes, through pathlib
    with open(tmp_path / "other.txt", "w") as other:
        other.write("x")
    assert own.read_text() == "done"
    assert not (tmp_path / "dev-termination-log").exists()
    assert (tmp_path / "other.txt").read_text() == "x"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0:8081", "10.1.0.7:8081"),
        ("[::]:8081", "10.1.0.7:8081"),
        (":8081", "10.1.0.7:8081"),
        ("127.0.0.1:8081", "127.0.0.1:8081"),
        ("10.9.9.9:50051", "10.9.9.9:50051"),
    ],
)
def test_a_grpc_server_on_the_wildcard_listens_on_the_pods_address(
    shim: ModuleType, address: str, expected: str
) -> None:
    assert shim.pod_address(address, "10.1.0.7") == expected
