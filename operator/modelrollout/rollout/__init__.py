"""The progressive rollout engine, pure: `tick(status, spec, target=..., metrics=..., now=..., verb=...)` returns
the next status and the actions that get there. See machine.tick and actions for the contract."""

from modelrollout.analysis.request import AnalysisOutcome, AnalysisRequest
from modelrollout.rollout.actions import (
    Action,
    EnsureRevision,
    Promote,
    RecordEvent,
    RequestAnalysis,
    ScaleDown,
    SetMirror,
    SetSticky,
    SetWeights,
)
from modelrollout.rollout.machine import Decision, tick
from modelrollout.rollout.verbs import Verb

__all__ = [
    "Action",
    "AnalysisOutcome",
    "AnalysisRequest",
    "Decision",
    "EnsureRevision",
    "Promote",
    "RecordEvent",
    "RequestAnalysis",
    "ScaleDown",
    "SetMirror",
    "SetSticky",
    "SetWeights",
    "Verb",
    "tick",
]
