"""A ModelDeployment's serving graph (`spec.online.graph`): other ModelDeployments of its namespace as members,
asked together with its own model (an ensemble), instead of it for some requests (conditional routes), or for
some users in an A/B/n test against it.

Each member is a ModelDeployment of its own, with its own revisions, rollout and analysis: the graph only names
it, and our router calls its `<name>` Service. The graph's own model is the member `self`; a new version of it
rolls out as a canary inside the ensemble (the router asks the canary in stable's place for the canary's share),
judged by its own model servers' metrics. Every rule is CEL and pydantic alike (see api.spec).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, WithJsonSchema, model_validator

from modelrollout.api.base import DNS_LABEL, ApiModel, Duration, cel, cel_rules
from modelrollout.api.rollout import SplitTest

SELF = "self"
# Names the router's document already gives its backends and ensembles (modelrollout_contract.router_v2).
RESERVED_MEMBER_NAMES = (SELF, "stable", "canary", "fallback", "shadow", "ensemble", "ensemble-canary")
MAX_MEMBERS = 8
MAX_ROUTES = 8

MEMBER_NAME_RESERVED = f"online.graph.members[].name must not be one of {', '.join(RESERVED_MEMBER_NAMES)}"
MEMBERS_UNIQUE = "online.graph.members names a member twice: give each member its own name"
ENSEMBLE_MEMBERS = "online.graph.ensemble.members must each be 'self' or a name in online.graph.members"
ENSEMBLE_NEEDS_SELF = (
    "online.graph.ensemble.members must include 'self', the ModelDeployment's own model: its rollout is what the "
    "ensemble's canary tries"
)
ENSEMBLE_UNIQUE = "online.graph.ensemble.members names a member twice"
QUORUM = "online.graph.ensemble.quorum must not be more than its members"
WEIGHTED_NEEDS_WEIGHTS = "online.graph.ensemble.combine weighted needs weights: member -> weight"
MEAN_HAS_NO_WEIGHTS = "online.graph.ensemble.combine mean counts every member alike: use combine weighted"
WEIGHTS_KEYS = "online.graph.ensemble.weights must give exactly the ensemble's members a weight each"
ROUTE_TARGET = "online.graph.routes[].to must be a name in online.graph.members (requests no route takes go to self)"
GRAPH_EMPTY = "online.graph needs an ensemble, routes or an A/B/n test: set online.graph.ensemble, routes or abn"
ROUTE_ONE_KIND = "online.graph.routes[] matches exactly one of header or feature"
HEADER_ROUTE_VALUE = "online.graph.routes[] with header sets exact or regex (not both), and not equals or in"
FEATURE_ROUTE_VALUE = "online.graph.routes[] with feature sets exactly one of equals or in, and not exact or regex"

ABN_WITH_ENSEMBLE = (
    "online.graph.abn and online.graph.ensemble exclude each other: an A/B/n test sends each user to one variant"
)
ABN_VARIANTS = "online.graph.abn.variants must each be 'self' or a name in online.graph.members"
ABN_NEEDS_SELF = "online.graph.abn.variants must include 'self', the ModelDeployment's own model: the control"
ABN_UNIQUE = "online.graph.abn.variants names a variant twice"
ABN_WEIGHTS = "online.graph.abn.variants' weights must add up to 100"

FeatureValue = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
]


class GraphMember(ApiModel):
    """A ModelDeployment of this namespace, in the graph under `name`."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(f"!(self.name in {list(RESERVED_MEMBER_NAMES)})", MEMBER_NAME_RESERVED, field_path=".name")
        )
    )

    name: str = Field(
        pattern=DNS_LABEL, max_length=40, description="The member's name in the graph (the router's backend name)."
    )
    model_deployment: str = Field(
        pattern=DNS_LABEL,
        max_length=63,
        description="A ModelDeployment in this namespace serving the same model name (online, answering at its "
        "`<name>` Service); it rolls out on its own, and status.graph says where.",
    )

    @model_validator(mode="after")
    def _not_reserved(self) -> GraphMember:
        if self.name in RESERVED_MEMBER_NAMES:
            raise ValueError(MEMBER_NAME_RESERVED)
        return self


class GraphEnsemble(ApiModel):
    """Every member asked at once and the answers combined (our router's ensembles)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(f"'{SELF}' in self.members", ENSEMBLE_NEEDS_SELF, field_path=".members"),
            cel(
                "self.members.all(x, self.members.filter(y, y == x).size() == 1)",
                ENSEMBLE_UNIQUE,
                field_path=".members",
            ),
            cel("!has(self.quorum) || self.quorum <= self.members.size()", QUORUM, field_path=".quorum"),
            cel("self.combine != 'weighted' || has(self.weights)", WEIGHTED_NEEDS_WEIGHTS, field_path=".weights"),
            cel("self.combine != 'mean' || !has(self.weights)", MEAN_HAS_NO_WEIGHTS, field_path=".weights"),
            cel(
                "!has(self.weights) || (self.weights.size() == self.members.size() "
                "&& self.members.all(m, m in self.weights))",
                WEIGHTS_KEYS,
                field_path=".weights",
            ),
        )
    )

    members: list[Annotated[str, Field(max_length=40)]] = Field(
        min_length=2,
        max_length=MAX_MEMBERS + 1,
        description="'self' (this ModelDeployment's model) and member names; on a tie the first listed wins.",
    )
    combine: Literal["mean", "weighted", "vote"] = Field(
        default="mean",
        description="mean: average the probabilities (each label output the label of the highest mean); "
        "weighted: the same, each member counting its weight; vote: majority of the labels.",
    )
    weights: dict[str, float] | None = Field(
        default=None, description="member -> weight (above 0): required by weighted, optional for vote."
    )
    quorum: int | None = Field(default=None, ge=1, description="Answers needed (default: every member).")
    member_timeout: Duration | None = Field(
        default=None, description="How long each member is waited for (default: the router's timeout)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> GraphEnsemble:
        if SELF not in self.members:
            raise ValueError(ENSEMBLE_NEEDS_SELF)
        if len(set(self.members)) != len(self.members):
            raise ValueError(ENSEMBLE_UNIQUE)
        if self.quorum is not None and self.quorum > len(self.members):
            raise ValueError(QUORUM)
        if self.combine == "weighted" and self.weights is None:
            raise ValueError(WEIGHTED_NEEDS_WEIGHTS)
        if self.combine == "mean" and self.weights is not None:
            raise ValueError(MEAN_HAS_NO_WEIGHTS)
        if self.weights is not None:
            if set(self.weights) != set(self.members):
                raise ValueError(WEIGHTS_KEYS)
            bad = sorted(m for m, w in self.weights.items() if not w > 0)
            if bad:
                raise ValueError(f"online.graph.ensemble.weights.{bad[0]} must be above 0")
        return self


class GraphRoute(ApiModel):
    """Requests that match go to member `to`: by a header (exact value or a regular expression over the whole
    value), or by a feature's value in every row of the request (an Open Inference Protocol input of that name, or
    a /predict record's key)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.header) != has(self.feature)", ROUTE_ONE_KIND),
            cel(
                "!has(self.header) || (has(self.exact) != has(self.regex) && !has(self.equals) && !has(self.__in__))",
                HEADER_ROUTE_VALUE,
            ),
            cel(
                "!has(self.feature) || (has(self.equals) != has(self.__in__) && !has(self.exact) && !has(self.regex))",
                FEATURE_ROUTE_VALUE,
            ),
        )
    )

    to: str = Field(max_length=40, description="A member's name.")
    header: str | None = Field(default=None, min_length=1, max_length=256, description="Header name.")
    exact: str | None = Field(default=None, max_length=1024, description="The header's exact value.")
    regex: str | None = Field(default=None, max_length=1024, description="A pattern the whole header value matches.")
    feature: str | None = Field(default=None, min_length=1, max_length=256, description="A feature's name.")
    equals: FeatureValue | None = Field(default=None, description="The value every row's feature must have.")
    in_: list[FeatureValue] | None = Field(
        default=None, alias="in", min_length=1, max_length=256, description="The values a row's feature may have."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> GraphRoute:
        if (self.header is None) == (self.feature is None):
            raise ValueError(ROUTE_ONE_KIND)
        if self.header is not None:
            if (self.exact is None) == (self.regex is None) or self.equals is not None or self.in_ is not None:
                raise ValueError(HEADER_ROUTE_VALUE)
        elif (self.equals is None) == (self.in_ is None) or self.exact is not None or self.regex is not None:
            raise ValueError(FEATURE_ROUTE_VALUE)
        return self


class AbnVariant(ApiModel):
    name: str = Field(max_length=40, description="'self' or a member's name.")
    weight: int = Field(ge=1, le=99, description="Percent of users it answers.")


class GraphAbn(SplitTest):
    """An A/B/n test: users split between 'self' (the control) and members by weight, each kept on one variant by
    a header or cookie value; every `interval` each variant's success rate is compared with the control's, with a
    correction for the number of comparisons (Holm for twoProportion, Bonferroni on e-values for sequential), and
    status.graph.abn says the winner: the best variant significantly better than the control, or the control when
    every variant is significantly worse. `onWinner` says what follows: `report` leaves the split as it is (acting
    on the winner is the owner's decision), `route` sends every user to the winner and ends the test."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(f"self.variants.exists(v, v.name == '{SELF}')", ABN_NEEDS_SELF, field_path=".variants"),
            cel(
                "self.variants.all(v, self.variants.filter(w, w.name == v.name).size() == 1)",
                ABN_UNIQUE,
                field_path=".variants",
            ),
            cel("self.variants.map(v, v.weight).sum() == 100", ABN_WEIGHTS, field_path=".variants"),
        )
    )

    variants: list[AbnVariant] = Field(
        min_length=2,
        max_length=MAX_MEMBERS + 1,
        description="In order: a user's bucket falls in the variants' cumulative ranges in this order.",
    )
    interval: Duration = Field(default="1m", description="How often the variants are compared.")
    on_winner: Literal["report", "route"] = Field(
        default="report",
        description="report: status.graph.abn names the winner and the split stays; route: once a winner is "
        "decided every user is routed to it, and the test ends (its verdict stands until a variant, a weight or "
        "a variant's version changes, which starts a new test on the split).",
    )

    @property
    def routes_winner(self) -> bool:
        """`onWinner: route`: a decided winner takes every user and ends the test."""
        return self.on_winner == "route"

    @model_validator(mode="after")
    def _consistent(self) -> GraphAbn:
        names = [v.name for v in self.variants]
        if SELF not in names:
            raise ValueError(ABN_NEEDS_SELF)
        if len(set(names)) != len(names):
            raise ValueError(ABN_UNIQUE)
        if sum(v.weight for v in self.variants) != 100:
            raise ValueError(ABN_WEIGHTS)
        return self


class ServingGraph(ApiModel):
    """Other ModelDeployments answering with or instead of this one's model, through our router."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.ensemble) || has(self.routes) || has(self.abn)", GRAPH_EMPTY),
            cel("!has(self.abn) || !has(self.ensemble)", ABN_WITH_ENSEMBLE, field_path=".abn"),
            cel(
                "!has(self.abn) || self.abn.variants.all(v, v.name == 'self' "
                "|| self.members.exists(m, m.name == v.name))",
                ABN_VARIANTS,
                field_path=".abn.variants",
            ),
            cel(
                "self.members.all(m, self.members.filter(n, n.name == m.name).size() == 1)",
                MEMBERS_UNIQUE,
                field_path=".members",
            ),
            cel(
                "!has(self.ensemble) || self.ensemble.members.all(x, x == 'self' "
                "|| self.members.exists(m, m.name == x))",
                ENSEMBLE_MEMBERS,
                field_path=".ensemble.members",
            ),
            cel(
                "!has(self.routes) || self.routes.all(r, self.members.exists(m, m.name == r.to))",
                ROUTE_TARGET,
                field_path=".routes",
            ),
        )
    )

    members: list[GraphMember] = Field(
        min_length=1, max_length=MAX_MEMBERS, description="The other ModelDeployments in the graph."
    )
    ensemble: GraphEnsemble | None = Field(default=None, description="Ask 'self' and members at once, combine.")
    routes: list[GraphRoute] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ROUTES,
        description="Tried in order; the first that matches sends the request to its member (after the rollout's "
        "own header route to the canary, if any).",
    )

    abn: GraphAbn | None = Field(default=None, description="An A/B/n test of 'self' against members.")

    @model_validator(mode="after")
    def _consistent(self) -> ServingGraph:
        if self.ensemble is None and not self.routes and self.abn is None:
            raise ValueError(GRAPH_EMPTY)
        if self.abn is not None and self.ensemble is not None:
            raise ValueError(ABN_WITH_ENSEMBLE)
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(MEMBERS_UNIQUE)
        if self.ensemble is not None and not set(self.ensemble.members) <= {SELF, *names}:
            raise ValueError(ENSEMBLE_MEMBERS)
        if any(route.to not in names for route in self.routes or []):
            raise ValueError(ROUTE_TARGET)
        if self.abn is not None and not {v.name for v in self.abn.variants} <= {SELF, *names}:
            raise ValueError(ABN_VARIANTS)
        return self
