"""The rollout decision of one reconcile pass: tick, and while the engine asks for an analysis or a gate's
confirmation, have it run (`analyse` and `confirm` are the only I/O, injected) and tick again with the outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.api.spec import ModelDeploymentSpec
from modelrollout.api.status import ModelDeploymentStatus, RevisionRef
from modelrollout.planning.reconcile import Observed, asked_after, candidate_failure, engine_input
from modelrollout.rollout import Action, Decision, RequestAnalysis, Verb, tick
from modelrollout.rollout.actions import GateAnswer, RequestConfirmation

# One pass answers at most this many analysis requests (a background run and a step run can fall due together).
ANALYSES_PER_PASS = 4
# A confirmRollout then a confirmPromotion (a rollout without steps) may both be asked in one pass.
CONFIRMATIONS_PER_PASS = 2
# None: no verdict yet (nothing to judge this pass); the engine asks again while the analysis is due.
Analyse = Callable[[AnalysisRequest], Awaitable[AnalysisOutcome | None]]
Confirm = Callable[[RequestConfirmation], Awaitable[GateAnswer]]


def _recorded(after: ModelDeploymentStatus, before: ModelDeploymentStatus) -> bool:
    """Whether a tick recorded a new analysis run."""
    runs, earlier = after.analysis.runs, before.analysis.runs
    return bool(runs) and (not earlier or runs[-1] != earlier[-1])


async def decide_pass(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    *,
    observed: Observed,
    target: RevisionRef,
    verb: Verb | None,
    now: datetime,
    analyse: Analyse,
    confirm: Confirm,
) -> tuple[Decision, list[Action]]:
    """The final decision of the pass and every action of it, in order.

    The first analysis that is due is judged before the pass acts on anything else: tick again from the same
    starting point with its outcome, so a step that ends in the same second as a failing run never raises the
    weight first. Every later one (or one this start could not have answered: a step entered during the pass)
    is judged on the decision that asked for it, so no verdict is ever dropped. A gate's webhook is asked after
    the analyses, and its answer is given to a tick of the decision that asked.
    """

    done: list[Action] = []

    def decide(
        base: ModelDeploymentStatus,
        outcome: AnalysisOutcome | None,
        with_verb: Verb | None,
        answer: GateAnswer | None = None,
    ) -> Decision:
        job = base.gate.job if base.gate is not None else None
        return tick(
            engine_input(base, observed),
            spec,
            target=target,
            metrics=outcome,
            now=now,
            verb=with_verb,
            failure=candidate_failure(base, observed),
            asked=asked_after(observed, done),  # a later tick of the pass knows what the earlier ones asked
            answer=answer,
            hook=observed.hooks.get(job) if job is not None else None,
        )

    decision = decide(status, None, verb)
    for attempt in range(ANALYSES_PER_PASS):
        requests = [a.request for a in decision.actions if isinstance(a, RequestAnalysis)]
        if not requests:
            break
        outcome = await analyse(requests[0])
        if outcome is None:
            break
        if attempt == 0:
            redo = decide(status, outcome, verb)
            if _recorded(redo.status, status):
                decision = redo
                continue
        done += decision.actions
        decision = decide(decision.status, outcome, None)
    for _ in range(CONFIRMATIONS_PER_PASS):
        asks = [a for a in decision.actions if isinstance(a, RequestConfirmation)]
        if not asks:
            break
        answer = await confirm(asks[0])
        done += decision.actions
        decision = decide(decision.status, None, None, answer)
    return decision, [*done, *decision.actions]
