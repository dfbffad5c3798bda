"""What a fault test watches while it breaks things: every version of the ModelDeployment (its status keys: phase,
step, roles) and of the routing document (the router's ConfigMap), and the kills it makes when either moves.

The routing document is what decides who answers a client: each of its versions is checked, not a sample of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from testkit.operator import OperatorProcess

from modelrollout.api import GROUP, PLURAL, VERSION
from modelrollout.planning.names import router_configmap_name
from modelrollout_contract.router import CONFIG_KEY
from tests.faults.rollouts.recording import ObjectHistory, Version

# A restarted operator needs longer than this before its first write (imports alone take over a second): a version
# that arrives sooner after a kill was written by the process just killed, so it is not a new boundary to kill at.
STARTUP_S = 1.0


@dataclass(frozen=True)
class StepKey:
    """Where a rollout stands, as status says: a new one is a step boundary."""

    phase: str | None
    step: int | None
    canary: str | None  # versions, not revisions: tests name versions
    stable: str | None
    scale_downs: int

    @classmethod
    def of(cls, status: dict[str, Any]) -> StepKey:
        return cls(
            phase=status.get("phase"),
            step=status.get("currentStep"),
            canary=(status.get("canary") or {}).get("version"),
            stable=(status.get("stable") or {}).get("version"),
            scale_downs=len(status.get("scaleDowns") or []),
        )

    def short(self) -> str:
        roles = f"{self.stable}" + (f"->{self.canary}" if self.canary else "")
        step = "" if self.step is None else f"@{self.step}"
        return f"{self.phase}{step}[{roles}]" + (f"+{self.scale_downs}sd" if self.scale_downs else "")


@dataclass(frozen=True)
class Routing:
    """The part of a routing document that decides who answers (not the fixed backends and timeouts)."""

    stable: str
    canary: str | None
    weights: tuple[int, int]
    mirror: int
    sticky: str | None

    @classmethod
    def of(cls, configmap: dict[str, Any] | None) -> Routing | None:
        text = ((configmap or {}).get("data") or {}).get(CONFIG_KEY)
        if text is None:
            return None
        doc = json.loads(text)
        sticky = doc.get("stickyBy")
        return cls(
            stable=doc["versions"]["stable"],
            canary=doc["versions"].get("canary"),
            weights=(doc["weights"]["stable"], doc["weights"]["canary"]),
            mirror=doc.get("mirrorPercent", 0),
            sticky=None if sticky is None else json.dumps(sticky, sort_keys=True),
        )

    def share_of(self, version: str) -> int:
        """Percent of client requests `version` answers (mirrored copies are not answers)."""
        share = self.weights[0] if self.stable == version else 0
        return share + (self.weights[1] if self.canary == version else 0)

    def short(self) -> str:
        split = f"{self.stable}:{self.weights[0]}/{self.canary}:{self.weights[1]}"
        return split + (f" mirror {self.mirror}" if self.mirror else "") + (" sticky" if self.sticky else "")


def status_share_of(status: dict[str, Any], version: str) -> int:
    """Percent of client requests status allows `version`."""
    weights = status.get("weights") or {}
    share = weights.get("stable", 100) if (status.get("stable") or {}).get("version") == version else 0
    return share + (weights.get("canary", 0) if (status.get("canary") or {}).get("version") == version else 0)


@dataclass(frozen=True)
class Kill:
    at: float
    why: str
    exit_code: int | None  # of the process killed: -9 when it was alive and SIGKILL ended it
    written_at: float  # when the version that triggered it was delivered


@dataclass
class Killer:
    """kill -9 of the operator and a new process at once, each time `trigger` is called while armed (a process
    that has had no time to write anything since the last kill is left alone)."""

    operator: OperatorProcess
    armed: bool = False
    kills: list[Kill] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def trigger(self, why: str, at: float) -> None:
        if not self.armed:
            return
        if self.kills and at - self.kills[-1].at < STARTUP_S:
            self.skipped.append(why)  # written by the process just killed, before it died
            return
        self.operator.restart()
        self.kills.append(Kill(time.time(), why, self.operator.exit_code, at))


@dataclass
class Witness:
    """The ModelDeployment's and the routing document's histories, and (with `killer`) a kill at each new
    status key and each new routing document."""

    md: ObjectHistory
    routing: ObjectHistory
    killer: Killer | None
    keys: list[tuple[float, StepKey]] = field(default_factory=list)
    documents: list[tuple[float, Routing]] = field(default_factory=list)

    @classmethod
    async def start(cls, api: client.ApiClient, namespace: str, name: str, *, killer: Killer | None = None) -> Witness:
        md = ObjectHistory(client.CustomObjectsApi(api).list_namespaced_custom_object,
                           (GROUP, VERSION, namespace, PLURAL), name)  # fmt: skip
        routing = ObjectHistory(client.CoreV1Api(api).list_namespaced_config_map, (namespace,),
                                router_configmap_name(name))  # fmt: skip
        witness = cls(md, routing, killer)
        md.on_version = witness._on_md
        routing.on_version = witness._on_routing
        await md.start()
        await routing.start()
        return witness

    def _on_md(self, version: Version) -> None:
        if version.obj is None:
            return
        key = StepKey.of(version.status)
        if not self.keys or self.keys[-1][1] != key:
            first = all(key != seen for _, seen in self.keys)
            self.keys.append((version.at, key))
            if self.killer is not None and first:  # a key seen before is no new boundary (and fails the test)
                self.killer.trigger(f"status {key.short()}", version.at)

    def _on_routing(self, version: Version) -> None:
        routing = Routing.of(version.obj)
        if routing is None:
            return
        if not self.documents or self.documents[-1][1] != routing:
            # A document seen before is no new boundary: killing again each time the routing comes back to one
            # could keep a rollout that goes back and forth (a product bug) from ever ending.
            first = all(routing != seen for _, seen in self.documents)
            self.documents.append((version.at, routing))
            if self.killer is not None and first:
                self.killer.trigger(f"routing {routing.short()}", version.at)

    async def stop(self) -> None:
        await self.md.stop()
        await self.routing.stop()

    # --- reading -------------------------------------------------------------------------------------------------

    def keys_since(self, since: float) -> list[StepKey]:
        return [key for at, key in self.keys if at >= since]

    def documents_since(self, since: float) -> list[Routing]:
        return [doc for at, doc in self.documents if at >= since]

    def statuses_since(self, since: float) -> list[tuple[float, dict[str, Any]]]:
        return [(v.at, v.status) for v in self.md.versions if v.obj is not None and v.at >= since]

    def overreach(self, version: str, since: float) -> list[tuple[float, str]]:
        """Routing documents that gave `version` more of the clients' requests than status allowed it: each
        document is compared with the first status written at or after it (a pass routes, then writes the status
        that says so; a process killed in between leaves the next process to write it). (time, why) of each."""
        statuses = self.statuses_since(since)
        found = []
        for at, doc in self.documents:
            if at < since:
                continue
            after = next((status for when, status in statuses if when >= at), None)
            if after is None:
                found.append((at, f"{doc.short()} at {at - since:.2f}s: no status was written after it"))
            elif doc.share_of(version) > status_share_of(after, version):
                found.append((at,
                    f"{doc.short()} at {at - since:.2f}s gives version {version} {doc.share_of(version)}%, the next "
                    f"status ({StepKey.of(after).short()}, weights {after.get('weights')}) allows "
                    f"{status_share_of(after, version)}%"
                ))  # fmt: skip
        return found

    def routing_back(self, since: float) -> list[tuple[float, Routing, str]]:
        """Routing documents that return to one the rollout had already left: a step applied again."""
        found = []
        seen: list[Routing] = []
        for at, doc in self.documents:
            if at < since:
                continue
            if seen and doc != seen[-1] and doc in seen:
                found.append((at, doc, f"{doc.short()} again at {at - since:.2f}s"))
            seen.append(doc)
        return found

    def step_restarts(self, since: float) -> list[str]:
        """Steps whose start time changed while the step went on (a restarted process starting it over)."""
        started: dict[tuple[str | None, int | None], str] = {}
        found = []
        for _at, status in self.statuses_since(since):
            step = ((status.get("canary") or {}).get("revision"), status.get("currentStep"))
            at = status.get("stepStartedAt")
            if step[0] is None or at is None:
                continue
            if step in started and started[step] != at:
                found.append(f"step {step[1]} of {step[0]}: started {started[step]}, then again {at}")
            started.setdefault(step, at)
        return found

    def describe(self, since: float, *, kills: bool = True) -> str:
        lines = [f"{at - since:7.2f}s status  {key.short()}" for at, key in self.keys if at >= since]
        lines += [f"{at - since:7.2f}s routing {doc.short()}" for at, doc in self.documents if at >= since]
        if kills and self.killer is not None:
            lines += [f"{k.at - since:7.2f}s KILL    after {k.why} (exit {k.exit_code})" for k in self.killer.kills]
        return "\n".join(sorted(lines))


def revisited(keys: list[StepKey]) -> list[StepKey]:
    """Keys that come back after another one: a rollout that went back (a step applied again)."""
    seen: set[StepKey] = set()
    found = []
    previous: StepKey | None = None
    for key in keys:
        if key != previous and key in seen:
            found.append(key)
        seen.add(key)
        previous = key
    return found


def contains_in_order(found: list[Any], expected: list[Any], same: Callable[[Any, Any], bool]) -> bool:
    """Whether `expected` is a subsequence of `found`."""
    it = iter(found)
    return all(any(same(item, wanted) for item in it) for wanted in expected)
