"""What a tick asks the operator to do, in order. Each action is idempotent: executing one twice (after a crash
between executing and patching status, the next tick repeats it) changes nothing.

Contract with the reconciler: a pass makes the actions real in a fixed order (planning.reconcile turns the pod
actions into objects: pods first, then the routing actions in the order given, then pods taken away), and writes
`Decision.status` only once they took effect. When one fails, the old status stays (or, once traffic has moved,
the new one is written with the failure reported), and the next tick, computed from it, asks for the same again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelrollout.analysis.request import AnalysisRequest
from modelrollout.api.gates import GateName
from modelrollout.api.notifications import NotificationKind
from modelrollout.api.status import RevisionRef
from modelrollout.traffic.base import StickyBy

Role = Literal["stable", "canary"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True, kw_only=True, slots=True)
class EnsureRevision:
    """Run `revision`'s workloads with `replicas` online pods (server-side apply; scaling up a revision that was
    scaled down). `role` says which Service (`<name>-stable` / `<name>-canary`) selects it. When `revision` is
    not the spec's current one (an undo), its pod template is the one already stored in its Deployment."""

    revision: RevisionRef
    role: Role
    replicas: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SetWeights:
    """TrafficRouter.set_weights(stable, canary): percentages per role, adding up to 100."""

    stable: int
    canary: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SetMirror:
    """TrafficRouter.set_mirror(percent): copy `percent`% of requests to the canary."""

    percent: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SetSticky:
    """TrafficRouter.set_sticky(by): from now on the weights split users, by this header or cookie value (an A/B
    test); None: back to splitting requests. Emitted before the SetWeights it qualifies."""

    by: StickyBy | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Promote:
    """`revision` becomes stable: point the stable role (the `<name>-stable` and `<name>` Services, the router's
    stable backend) at it. `previous` stops being stable; a later ScaleDown retires it."""

    revision: RevisionRef
    previous: RevisionRef | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ScaleDown:
    """Scale `revision`'s workloads to zero. Keep the objects (replicas 0): undo scales them up again without
    the spec that made them. Emitted when due; a delayed scale-down waits in status.scaleDowns until then."""

    revision: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordEvent:
    """A Kubernetes Event on the ModelDeployment. `notify`: the notification kinds it is (none: webhooks do not
    hear of it), named where the event is decided because a reason alone is ambiguous (AnalysisFailed is a
    tolerated failure or a rollback)."""

    type: EventType
    reason: str
    message: str
    notify: frozenset[NotificationKind] = frozenset()


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestAnalysis:
    """An analysis is due: run `request` (analysis.run_analysis) and call tick again with the outcome. Until an
    outcome arrives, the rollout waits where the analysis matters (analysis steps, shadow's final verdict)."""

    request: AnalysisRequest


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestConfirmation:
    """A confirm gate's webhook is due: ask it (once) and call tick again with the `GateAnswer`. Until a yes, the
    rollout waits at the gate."""

    gate: GateName
    revision: RevisionRef


@dataclass(frozen=True, kw_only=True, slots=True)
class RunHook:
    """Run the preRollout hook Job `job` against `revision` (its pods are ready; it gets no traffic yet). Applying
    the same Job again changes nothing; tick learns how it ended from a `HookRun`."""

    job: str
    revision: RevisionRef


@dataclass(frozen=True, slots=True)
class GateAnswer:
    """What a confirm gate's webhook answered: `ok` for a 2xx; `detail` is the answer in words (status and the start
    of the body, or why there was none)."""

    gate: GateName
    revision: str
    ok: bool
    detail: str


HookPhase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True, slots=True)
class HookRun:
    """How a preRollout hook Job stands, as observed."""

    job: str
    phase: HookPhase
    message: str = ""


Action = (
    EnsureRevision
    | SetWeights
    | SetMirror
    | SetSticky
    | Promote
    | ScaleDown
    | RecordEvent
    | RequestAnalysis
    | RequestConfirmation
    | RunHook
)
