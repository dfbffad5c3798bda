"""WatchedCluster's reads that no pass makes of the API server: which serving graphs name a ModelDeployment."""

from __future__ import annotations

from typing import Any

from modelrollout.api.resource import GROUP, KIND, VERSION
from modelrollout.kube.children import WatchedCluster


def stored(namespace: str, name: str, *members: str, version: int = 1) -> dict[str, Any]:
    online: dict[str, Any] = {"replicas": 1}
    if members:
        online["graph"] = {"members": [{"name": f"m{i}", "modelDeployment": m} for i, m in enumerate(members)],
                           "routes": [{"to": "m0", "header": "x-m", "exact": "0"}]}  # fmt: skip
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": str(version), "uid": name},
        "spec": {"online": online},
    }


def test_the_graphs_naming_a_model_deployment_are_those_of_its_namespace_that_list_it() -> None:
    cluster = WatchedCluster(None, (), lambda *_: None, namespaces=[])  # type: ignore[arg-type]  # never started
    for body in (
        stored("ml", "churn", "churn-b", "churn-c"),
        stored("ml", "fraud", "churn-b"),
        stored("ml", "churn-b"),
        stored("other", "churn", "churn-b"),  # another namespace's churn-b
    ):
        cluster.wrote(body)
    assert sorted(cluster.graphs_naming("ml", "churn-b")) == [("ml", "churn"), ("ml", "fraud")]
    assert cluster.graphs_naming("ml", "churn-c") == [("ml", "churn")]
    assert cluster.graphs_naming("ml", "churn") == []
    cluster.wrote(stored("ml", "fraud", version=2))  # its graph taken out
    assert cluster.graphs_naming("ml", "churn-b") == [("ml", "churn")]
