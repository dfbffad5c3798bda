"""The ModelDeployments the bench applies (pure): a fixed mix of flavours spread over namespaces, their manifests,
the version patches that start new revisions, and which objects the reaction and tick measurements touch.

Flavours, by index (every block of ten: eight direct, one direct with an HPA, one canary through our router):
- `direct`: `strategy: direct` (the default), one replica: the common case;
- `hpa`: direct with `online.autoscaling` (an HPA per revision, two to five replicas);
- `canary`: `strategy: canary` with `trafficRouting.provider: router` (a router Deployment, its ServiceAccount,
  Role, RoleBinding and routing ConfigMap besides the revision's Deployment), short timed pauses and no analysis
  (there is no Prometheus on the bench cluster), so a rollout runs to promotion by itself.
Namespaces take blocks of ten in turn, so every namespace holds the same mix."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

GROUP = "modelrollout.dev"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
NAMESPACE_PREFIX = "mr-bench-"
BLOCK = 10
HPA_AT = 8  # index within a block of ten
CANARY_AT = 9
FIRST_VERSION = "1"
# Canary weights; a timed pause of `pause_s` between two of them. Four pauses per rollout, each followed by a
# setWeight: four tick samples per rollout, the last step's completion then promotes.
CANARY_WEIGHTS = (10, 20, 30, 40, 50)

Flavor = Literal["direct", "hpa", "canary"]
FLAVORS: tuple[Flavor, ...] = ("direct", "hpa", "canary")


@dataclass(frozen=True)
class Item:
    """One ModelDeployment of the mix."""

    index: int
    namespace: str
    name: str
    flavor: Flavor

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


def namespaces(count: int) -> list[str]:
    return [f"{NAMESPACE_PREFIX}{i:02d}" for i in range(count)]


def flavor_of(index: int) -> Flavor:
    position = index % BLOCK
    if position == CANARY_AT:
        return "canary"
    if position == HPA_AT:
        return "hpa"
    return "direct"


def plan_mix(size: int, namespace_count: int) -> list[Item]:
    """`size` ModelDeployments; namespace i % count takes the i-th block of ten."""
    if size < 0 or namespace_count < 1:
        raise ValueError("size must be >= 0 and namespace_count >= 1")
    spaces = namespaces(namespace_count)
    return [
        Item(index=i, namespace=spaces[(i // BLOCK) % namespace_count], name=f"m{i:05d}", flavor=flavor_of(i))
        for i in range(size)
    ]


def canary_steps(pause_s: float) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for weight in CANARY_WEIGHTS:
        if steps:
            steps.append({"pause": {"duration": f"{pause_s:g}s"}})
        steps.append({"setWeight": weight})
    return steps


def model_block(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "uri": f"s3://models/{name}/{version}/model.joblib", "format": "sklearn"}


def manifest(item: Item, *, version: str = FIRST_VERSION, pause_s: float = 5.0) -> dict[str, Any]:
    """The ModelDeployment of `item` at model version `version`."""
    spec: dict[str, Any] = {"model": model_block(item.name, version)}
    if item.flavor == "hpa":
        spec["online"] = {"autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}}
    else:
        spec["online"] = {"replicas": 1}
    if item.flavor == "canary":
        spec["rollout"] = {
            "strategy": "canary",
            "canary": {"steps": canary_steps(pause_s)},
            "trafficRouting": {"provider": "router"},
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": item.name, "namespace": item.namespace, "labels": {"bench": "operator"}},
        "spec": spec,
    }


def version_patch(item: Item, version: str) -> dict[str, Any]:
    """A merge patch that gives `item` a new model version: a new revision, hence a rollout."""
    return {"spec": {"model": model_block(item.name, version)}}


def next_version(version: str) -> str:
    return str(int(version) + 1)


def pause_indices(pause_s: float) -> dict[int, float]:
    """Index of each timed pause in `canary_steps(pause_s)` -> its duration in seconds."""
    return {i: pause_s for i, step in enumerate(canary_steps(pause_s)) if "pause" in step}


def weight_during(step_index: int) -> int:
    """The canary weight in force while `canary_steps` is at `step_index` (the last setWeight at or before it)."""
    return CANARY_WEIGHTS[step_index // 2]


def tick_subjects(items: list[Item], count: int) -> list[Item]:
    """The canaries whose rollouts the tick measurement drives, one at a time: spread over the mix (and so over
    namespaces), never touched by the reaction measurement."""
    canaries = [item for item in items if item.flavor == "canary"]
    if count <= 0 or not canaries:
        return []
    stride = max(1, len(canaries) // count)
    return canaries[::stride][:count]


def reaction_targets(items: list[Item], count: int, *, exclude: list[Item], seed: int) -> list[Item]:
    """`count` distinct objects to patch one at a time, drawn with `seed` (the same for every version measured,
    so before and after patch the same objects in the same order)."""
    excluded = {item.key for item in exclude}
    pool = [item for item in items if item.key not in excluded]
    return random.Random(seed).sample(pool, min(count, len(pool)))


def expected_children(flavor: Flavor) -> dict[str, int]:
    """The least a converged ModelDeployment of `flavor` owns, by kind (counted by label modelrollout.dev/name):
    the revision's Deployment and the three Services (main, stable, canary); a canary through our router adds the
    router's Deployment and its routing ConfigMap; autoscaling adds an HPA."""
    children = {"Deployment/online": 1, "Service": 3}
    if flavor == "canary":
        children |= {"Deployment/router": 1, "ConfigMap": 1}
    if flavor == "hpa":
        children |= {"HorizontalPodAutoscaler": 1}
    return children


def mix_counts(items: list[Item]) -> dict[Flavor, int]:
    return {flavor: sum(1 for item in items if item.flavor == flavor) for flavor in FLAVORS}


def count_children(listing: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], dict[str, int]]:
    """Children by owner (namespace, modelrollout.dev/name label) and kind; Deployments split by their
    modelrollout.dev/mode label (`Deployment/online`, `Deployment/router`)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for kind, objects in listing.items():
        for obj in objects:
            labels = obj["metadata"].get("labels") or {}
            owner = labels.get(f"{GROUP}/name")
            if owner is None:
                continue
            name = f"{kind}/{labels.get(f'{GROUP}/mode', '')}" if kind == "Deployment" else kind
            owned = counts.setdefault((obj["metadata"]["namespace"], owner), {})
            owned[name] = owned.get(name, 0) + 1
    return counts


def missing_children(counts: dict[tuple[str, str], dict[str, int]], items: list[Item]) -> dict[str, int]:
    """For each kind of `expected_children`, how many ModelDeployments own fewer than expected."""
    missing: dict[str, int] = {}
    for item in items:
        owned = counts.get(item.key, {})
        for kind, least in expected_children(item.flavor).items():
            if owned.get(kind, 0) < least:
                missing[kind] = missing.get(kind, 0) + 1
    return missing


def first_times(items: list[Item], first_at: dict[tuple[str, str], float], *, since: float) -> dict[str, list[float]]:
    """Seconds from `since` to each ModelDeployment's first `first_at`, by flavour (those without one left out)."""
    times: dict[str, list[float]] = {flavor: [] for flavor in FLAVORS}
    for item in items:
        if item.key in first_at:
            times[item.flavor].append(first_at[item.key] - since)
    return times
