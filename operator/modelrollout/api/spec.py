"""The desired state of a ModelDeployment (`spec`).

Every cross-field rule is written twice on purpose: as CEL (`cel_rules`) so the API server rejects bad input at
admission with a message naming the field, and as a pydantic validator so the CLI and the operator reject the
same input with the same words. tests/unit/modelrollout/api and tests/integration/api run one shared list of
invalid manifests through both, so the two cannot drift apart.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from modelrollout.api.base import ApiModel, cel, cel_rules, duration_seconds
from modelrollout.api.graph import ServingGraph
from modelrollout.api.model import ModelSpec
from modelrollout.api.notifications import NotificationsSpec
from modelrollout.api.placement import PodSettings
from modelrollout.api.rollout import RECORD_STRATEGIES, RolloutSpec
from modelrollout.api.workloads import BatchSpec, Fallback, OnlineSpec, StreamSpec

_RECORD_LIST = ", ".join(RECORD_STRATEGIES)
STRATEGY_NEEDS_ONLINE = (
    "rollout.strategy blueGreen and abTest need spec.online (a preview to switch to, HTTP users to split): without "
    f"it, batch and stream roll out with {_RECORD_LIST}"
)
ROUTING_NEEDS_ONLINE = (
    "rollout.trafficRouting splits HTTP requests and needs spec.online: remove it (batch and stream split records "
    "by key themselves)"
)

# A spec that only batch leads (no online, no stream): what its runs can and cannot be judged by.
_BATCH_LEADS = "!has(self.online) && !has(self.stream) && has(self.batch)"
BATCH_CANARY_NEEDS_KEY = (
    "rollout.strategy canary on batch splits records by a key column: set spec.batch.key or spec.batch.idColumns"
)
BATCH_STEPS = (
    "rollout.canary.steps of a batch rollout are setWeight (one run at that weight each) and pause: every run is "
    "judged by spec.batch.gates, so remove the analysis steps"
)
BATCH_ANALYSIS = (
    "rollout.analysis (Prometheus) is not run for a batch-only rollout: its runs are judged by spec.batch.gates; "
    "remove rollout.analysis"
)

BATCH_GATES = (
    "rollout.gates are passed by online and stream rollouts; a batch-only rollout is judged run by run by "
    "spec.batch.gates: remove rollout.gates"
)
PRE_ROLLOUT_NEEDS_ONLINE = (
    "rollout.gates.preRollout runs a Job against the candidate's Service and needs spec.online: remove it (a "
    "stream rollout can use confirmRollout)"
)

STREAM_SHADOW = (
    "a stream shadow writes the candidate's answers to a topic of their own, compared with the output topic's: "
    "set stream.kafka.shadowTopic"
)
FALLBACK_NEEDS_ROUTER = (
    "online.fallback is answered by our router, which calls it when a revision fails: set "
    "rollout.trafficRouting.provider: router"
)
DEFAULT_ROUTER_TIMEOUT_S = 10.0  # RouterSettings.timeout's default
FALLBACK_BUDGET = "online.fallback.latencyBudget must be below rollout.trafficRouting.router.timeout (default 10s)"
_ROUTER_TIMEOUT = (
    "(has(self.rollout.trafficRouting.router) && has(self.rollout.trafficRouting.router.timeout) "
    "? self.rollout.trafficRouting.router.timeout : '10s')"
)

GRAPH_NEEDS_ROUTER = (
    "online.graph is served by our router, which asks its members: set rollout.trafficRouting.provider: router"
)
GRAPH_ENSEMBLE_SHADOW = (
    "rollout.strategy shadow copies stable's requests to the candidate, and with online.graph.ensemble the "
    "ensemble answers them: roll the ensemble's model out with canary, blueGreen or abTest"
)
GRAPH_ABN_DIRECT = (
    "online.graph.abn splits users between this model's stable version and the members: roll this model out with "
    "rollout.strategy direct while the test runs"
)
GRAPH_MEMBER_TIMEOUT = (
    "online.graph.ensemble.memberTimeout must not be above rollout.trafficRouting.router.timeout (default 10s)"
)

STREAM_AND_BATCH = (
    "batch and stream together need spec.online to lead their rollout: add spec.online, or give batch and "
    "stream a ModelDeployment each"
)


class ModelDeploymentSpec(ApiModel):
    """A model and how it is served (online), scored (batch), streamed (stream) and rolled out."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.online) || has(self.batch) || has(self.stream)",
                "set at least one of spec.online, spec.batch or spec.stream",
                reason="FieldValueRequired",
            ),
            cel(
                "has(self.online) || !has(self.rollout) || !has(self.rollout.strategy) "
                f"|| self.rollout.strategy in {list(RECORD_STRATEGIES)}",
                STRATEGY_NEEDS_ONLINE,
                field_path=".rollout.strategy",
            ),
            cel(
                "has(self.online) || !has(self.rollout) || !has(self.rollout.trafficRouting)",
                ROUTING_NEEDS_ONLINE,
                field_path=".rollout.trafficRouting",
            ),
            cel(
                f"!({_BATCH_LEADS}) || !has(self.rollout) || !has(self.rollout.strategy) "
                "|| self.rollout.strategy != 'canary' || has(self.batch.key) "
                "|| (has(self.batch.idColumns) && self.batch.idColumns.size() > 0)",
                BATCH_CANARY_NEEDS_KEY,
                field_path=".batch.key",
                reason="FieldValueRequired",
            ),
            cel(
                f"!({_BATCH_LEADS}) || !has(self.rollout) || !has(self.rollout.canary) "
                "|| self.rollout.canary.steps.all(s, !has(s.analysis))",
                BATCH_STEPS,
                field_path=".rollout.canary.steps",
            ),
            cel(
                "has(self.online) || !has(self.stream) || !has(self.rollout) || !has(self.rollout.strategy) "
                "|| self.rollout.strategy != 'shadow' || has(self.stream.kafka.shadowTopic)",
                STREAM_SHADOW,
                field_path=".stream.kafka.shadowTopic",
                reason="FieldValueRequired",
            ),
            cel(
                "has(self.online) || !has(self.stream) || !has(self.batch)",
                STREAM_AND_BATCH,
                field_path=".batch",
            ),
            cel(
                f"!({_BATCH_LEADS}) || !has(self.rollout) || !has(self.rollout.analysis)",
                BATCH_ANALYSIS,
                field_path=".rollout.analysis",
            ),
            cel(
                f"!({_BATCH_LEADS}) || !has(self.rollout) || !has(self.rollout.gates)",
                BATCH_GATES,
                field_path=".rollout.gates",
            ),
            cel(
                "has(self.online) || !has(self.rollout) || !has(self.rollout.gates) "
                "|| !has(self.rollout.gates.preRollout)",
                PRE_ROLLOUT_NEEDS_ONLINE,
                field_path=".rollout.gates.preRollout",
            ),
            cel(
                "!has(self.online) || !has(self.online.fallback) || (has(self.rollout) "
                "&& has(self.rollout.trafficRouting) && self.rollout.trafficRouting.provider == 'router')",
                FALLBACK_NEEDS_ROUTER,
                field_path=".online.fallback",
            ),
            cel(
                "!has(self.online) || !has(self.online.fallback) || !has(self.online.fallback.latencyBudget) "
                "|| !has(self.rollout) || !has(self.rollout.trafficRouting) "
                f"|| duration(self.online.fallback.latencyBudget) < duration({_ROUTER_TIMEOUT})",
                FALLBACK_BUDGET,
                field_path=".online.fallback.latencyBudget",
            ),
            cel(
                "!has(self.online) || !has(self.online.graph) || (has(self.rollout) "
                "&& has(self.rollout.trafficRouting) && self.rollout.trafficRouting.provider == 'router')",
                GRAPH_NEEDS_ROUTER,
                field_path=".online.graph",
            ),
            cel(
                "!has(self.online) || !has(self.online.graph) || !has(self.online.graph.ensemble) "
                "|| !has(self.rollout) || !has(self.rollout.strategy) || self.rollout.strategy != 'shadow'",
                GRAPH_ENSEMBLE_SHADOW,
                field_path=".rollout.strategy",
            ),
            cel(
                "!has(self.online) || !has(self.online.graph) || !has(self.online.graph.abn) "
                "|| !has(self.rollout) || !has(self.rollout.strategy) || self.rollout.strategy == 'direct'",
                GRAPH_ABN_DIRECT,
                field_path=".rollout.strategy",
            ),
            cel(
                "!has(self.online) || !has(self.online.graph) || !has(self.online.graph.ensemble) "
                "|| !has(self.online.graph.ensemble.memberTimeout) || !has(self.rollout) "
                "|| !has(self.rollout.trafficRouting) "
                f"|| duration(self.online.graph.ensemble.memberTimeout) <= duration({_ROUTER_TIMEOUT})",
                GRAPH_MEMBER_TIMEOUT,
                field_path=".online.graph.ensemble.memberTimeout",
            ),
        )
    )

    model: ModelSpec = Field(description="The model artifact and its runtime.")
    online: OnlineSpec | None = Field(default=None, description="Serve predictions over HTTP.")
    batch: BatchSpec | None = Field(default=None, description="Score files on a schedule.")
    stream: StreamSpec | None = Field(default=None, description="Score a Kafka topic continuously.")
    pod: PodSettings | None = Field(
        default=None,
        description="Where and as whom every pod runs: node selector, tolerations, affinity, spread, "
        "ServiceAccount, image pull Secrets, priority, extra labels and annotations.",
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How a new revision reaches users (default: direct).",
        # The API server validates a default as written (nested defaults are not applied to it first).
        json_schema_extra={"default": {"strategy": "direct"}},
    )
    notifications: NotificationsSpec | None = Field(
        default=None,
        description="Webhooks told about this ModelDeployment's rollout events (started, stepReached, paused, "
        "promoted, rolledBack, analysisFailed, abDecided). Unset: only the operator's default webhooks, if any.",
    )

    @model_validator(mode="after")
    def _some_mode(self) -> ModelDeploymentSpec:
        if self.online is None and self.batch is None and self.stream is None:
            raise ValueError("set at least one of spec.online, spec.batch or spec.stream")
        if self.online is None and self.rollout.strategy not in RECORD_STRATEGIES:
            raise ValueError(STRATEGY_NEEDS_ONLINE)
        if self.online is None and self.rollout.traffic_routing is not None:
            raise ValueError(ROUTING_NEEDS_ONLINE)
        if self.batch_leads:
            self._batch_rollout_rules()
        if self.stream_leads and self.rollout.strategy == "shadow":
            assert self.stream is not None  # stream_leads
            if self.stream.kafka.shadow_topic is None:
                raise ValueError(STREAM_SHADOW)
        if self.stream_leads and self.batch is not None:
            raise ValueError(STREAM_AND_BATCH)
        gates = self.rollout.gates
        if self.online is None and gates is not None and gates.pre_rollout is not None:
            raise ValueError(PRE_ROLLOUT_NEEDS_ONLINE)
        if self.online is not None and self.online.fallback is not None:
            self._fallback_rules(self.online.fallback)
        if self.online is not None and self.online.graph is not None:
            self._graph_rules(self.online.graph)
        return self

    def _router_timeout(self) -> float | None:
        """The router's timeout in seconds; None when our router is not the provider."""
        routing = self.rollout.traffic_routing
        if routing is None or routing.provider != "router":
            return None
        return duration_seconds(routing.router.timeout) if routing.router else DEFAULT_ROUTER_TIMEOUT_S

    def _graph_rules(self, graph: ServingGraph) -> None:
        timeout = self._router_timeout()
        if timeout is None:
            raise ValueError(GRAPH_NEEDS_ROUTER)
        if graph.abn is not None and self.rollout.strategy != "direct":
            raise ValueError(GRAPH_ABN_DIRECT)
        if graph.ensemble is None:
            return
        if self.rollout.strategy == "shadow":
            raise ValueError(GRAPH_ENSEMBLE_SHADOW)
        wait = graph.ensemble.member_timeout
        if wait is not None and duration_seconds(wait) > timeout:
            raise ValueError(GRAPH_MEMBER_TIMEOUT)

    def _fallback_rules(self, fallback: Fallback) -> None:
        timeout = self._router_timeout()
        if timeout is None:
            raise ValueError(FALLBACK_NEEDS_ROUTER)
        if fallback.latency_budget is not None and duration_seconds(fallback.latency_budget) >= timeout:
            raise ValueError(FALLBACK_BUDGET)

    def _batch_rollout_rules(self) -> None:
        assert self.batch is not None
        rollout = self.rollout
        if rollout.strategy == "canary" and self.batch.canary_key is None:
            raise ValueError(BATCH_CANARY_NEEDS_KEY)
        if rollout.canary is not None and any(step.analysis is not None for step in rollout.canary.steps):
            raise ValueError(BATCH_STEPS)
        if rollout.analysis is not None:
            raise ValueError(BATCH_ANALYSIS)
        if rollout.gates is not None:
            raise ValueError(BATCH_GATES)

    @property
    def stream_leads(self) -> bool:
        """Stream leads a spec without online: its consumers' metrics decide the rollout."""
        return self.online is None and self.stream is not None

    @property
    def batch_leads(self) -> bool:
        """Batch is the only mode that can lead: its runs decide the rollout."""
        return self.online is None and self.stream is None and self.batch is not None

    @property
    def modes(self) -> list[str]:
        return [m for m in ("online", "batch", "stream") if getattr(self, m) is not None]
