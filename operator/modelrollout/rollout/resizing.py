"""The size of what serves follows the spec: a change of `online.replicas` (or of the autoscaler's floor) is not
a new revision, so no step would ever resize the roles; this stage does, on every tick, for any role the tick did
not size itself."""

from __future__ import annotations

from collections.abc import Mapping

from modelrollout.api.status import RevisionRef
from modelrollout.rollout.actions import EnsureRevision, Role, ScaleDown
from modelrollout.rollout.sizing import for_traffic, full_replicas
from modelrollout.rollout.work import Work, label


def follow_size(w: Work, asked: Mapping[str, int]) -> None:
    """Resize the stable and candidate revisions to what their traffic needs at the spec's size, when that
    differs from what we last asked for (`asked`: pods per revision, as the Deployments record it)."""
    s = w.status
    decided = {a.revision.revision for a in w.actions if isinstance(a, EnsureRevision)}
    decided |= {a.revision for a in w.actions if isinstance(a, ScaleDown)}
    canary_running = s.canary is not None and asked.get(s.canary.revision, 0) > 0
    sizes = for_traffic(w.spec, s, canary_running=canary_running)
    resized = False
    roles: tuple[tuple[Role, RevisionRef | None, int | None], ...] = (
        ("stable", s.stable, sizes.stable),
        ("canary", s.canary, sizes.canary),
    )
    for role, ref, pods in roles:
        if ref is None or pods is None or ref.revision in decided:
            continue
        before = asked.get(ref.revision)
        if before is None or before == pods:  # no Deployment to resize (planning restores a lost one)
            continue
        w.ensure(ref, role, pods)
        w.event(
            "Normal",
            "Scaled",
            f"{label(ref)} ({role}) runs {pods} pods instead of {before}: the spec asks for "
            f"{full_replicas(w.spec)} at full size",
        )
        resized = True
    if resized and w.spec.rollout.provider == "service" and sizes.canary_weight != s.weights.canary:
        w.set_weights(100 - sizes.canary_weight, sizes.canary_weight)
