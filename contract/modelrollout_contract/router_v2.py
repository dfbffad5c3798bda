"""Version 2 of the routing document: any number of named backends, an A/B/n split over them, header routes to any
of them, a mirror between any two, and fallback chains. Our router reads version 1 and version 2 (`parse_any`
upgrades a version 1 document to the version 2 routing it means); the operator writes version 1 while one stable and
one candidate are all a ModelDeployment routes to, so a router of the previous release keeps reading what it writes.

    {"schemaVersion": 2, "route": "churn", "control": "stable",
     "backends": {"stable": {"url": "http://churn-stable.ns.svc:80", "version": "1"},
                  "b": {"url": "http://churn-b.ns.svc:80", "version": "2"},
                  "c": {"url": "http://churn-c.ns.svc:80", "version": "3"},
                  "rules": {"url": "http://churn-rules.ns.svc:80", "version": "r1"}},
     "split": [{"backend": "b", "weight": 20}, {"backend": "c", "weight": 20}, {"backend": "stable", "weight": 60}],
     "stickyBy": {"header": "x-user-id"},
     "routes": [{"header": "x-variant", "exact": "c", "to": "c"}, {"feature": "country", "equals": "FR", "to": "b"}],
     "mirror": {"from": "stable", "to": "b", "percent": 5},
     "fallbacks": {"stable": {"to": ["rules"], "latencyBudgetSeconds": 0.2}, "b": {"to": ["stable"]}},
     "timeoutSeconds": 10}

- `backends`: name -> where it is and the model version that answers there. The name is the `role` label of the
  router's metrics and of its `x-modelrollout-role` answer header, so it is a DNS label.
- `split`: the share of requests (or, with `stickyBy`, of users) each backend gets, in percent adding up to 100.
  The order matters with `stickyBy`: a user's bucket (modelrollout_contract.sticky) falls in the entries'
  cumulative ranges in this order, so the first entry keeps its users when it grows (a version 1 document lists the
  canary first, stable last: a canary only gains users), while with more than two entries a change of an earlier
  weight shifts the later entries' ranges: an A/B/n test keeps its weights while it runs.
- `control`: the backend of record: a request without its sticky key goes there (header mode), and an A/B/n test
  compares every other variant with it.
- `routes`: tried in order before the split, the first that matches decides (not an assignment): a header match,
  or a feature's value in every row of the request (`equals` or `in`; the router's routing.features reads it).
- `mirror`: a share of the POST requests `from` answered with 2xx is copied to `to` and the answers compared.
- `fallbacks`: when a backend fails a request (no answer, a 5xx, `timeoutSeconds` passed, or its
  `latencyBudgetSeconds` passed), the backends in `to` are tried in order until one answers; the client gets one
  answer. 4xx answers are the request's fault and are passed on. A fallback's own chain is not followed.
- `ensembles`: name -> an ensemble of backends, which `control`, `split`, `routes` and `fallbacks` name as they name
  a backend (the names share one space): its inference requests go to every member at once, and the answers of
  those that answer within `memberTimeoutSeconds` are combined into one (`combine`: `mean` of the floating-point
  outputs, the probabilities, with each label output the label of the highest mean probability; `weighted`: the
  same, each member counting its weight; `vote`: label outputs by majority, weighted when `weights` are given, ties
  to the member listed first, floating-point outputs averaged). With fewer than `quorum` answers the ensemble fails
  (and its fallback chain, if any, answers). Other requests (metadata, health) go to the first member that answers.

    "ensembles": {"trio": {"members": ["stable", "b", "c"], "combine": "mean", "quorum": 2,
                           "memberTimeoutSeconds": 0.5}}
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from modelrollout_contract.router import (
    CONFIG_KEY,
    SCHEMA_VERSION,
    Backends,
    ContractModel,
    HeaderRoute,
    RouterConfig,
    RouterConfigError,
    StickyBy,
    Versions,
    Weights,
    json_object,
    validated,
)

SCHEMA_VERSION_2: Literal[2] = 2
KNOWN_VERSIONS = (SCHEMA_VERSION, SCHEMA_VERSION_2)
# A DNS label: a backend's name is a metrics label value and, for the operator, part of a Service name.
BACKEND_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
MAX_BACKENDS = 16
MAX_ROUTES = 16
MAX_CHAIN = 8
MAX_ENSEMBLES = 8
# The names a version 1 document's roles have in version 2, and the operator's fallback model beside them.
STABLE, CANARY, FALLBACK = "stable", "canary", "fallback"
# A ModelDeployment's serving graph (with_graph): `self` names its own model among the members of its ensemble,
# which the operator writes twice, as ENSEMBLE with stable and ENSEMBLE_CANARY with the canary in its place.
SELF, ENSEMBLE, ENSEMBLE_CANARY = "self", "ensemble", "ensemble-canary"
_IN_PLACE = {STABLE: ENSEMBLE, CANARY: ENSEMBLE_CANARY}
_AS_ROLES = {ensemble: role for role, ensemble in _IN_PLACE.items()}  # how downgrade reads them back
# The router counts mirrored calls under this role: no backend may have the name.
SHADOW_ROLE = "shadow"


class BackendV2(ContractModel):
    url: str = Field(pattern=r"^https?://", description="Base URL of the backend's Service.")
    version: str = Field(min_length=1, max_length=63, description="Model version that answers there.")


class Share(ContractModel):
    backend: str = Field(description="A name in backends.")
    weight: int = Field(ge=0, le=100, description="Percent of requests (or of users, with stickyBy).")


Scalar = str | int | float


class Route(ContractModel):
    """Requests that match go to backend `to`: by a header (exact value, regular expression over the whole value,
    or presence: as HeaderRoute), or by a feature's value in the request body (`equals` one value or is `in` a
    list) in every row of it."""

    to: str = Field(description="A name in backends.")
    header: str | None = Field(default=None, min_length=1, max_length=256, description="Header name.")
    exact: str | None = Field(default=None, max_length=1024, description="The header's exact value.")
    regex: str | None = Field(default=None, max_length=1024, description="A pattern the whole header value matches.")
    feature: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="A feature: an Open Inference Protocol input of that name, a /predict record's key, or with "
        "`index` the label of that column of the request's first input.",
    )
    index: int | None = Field(default=None, ge=0, le=100_000, description="The feature's column in the first input.")
    equals: Scalar | None = Field(default=None, description="The value every row's feature must have.")
    in_: list[Scalar] | None = Field(
        default=None, alias="in", min_length=1, max_length=256, description="The values a row's feature may have."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Route:
        if (self.header is None) == (self.feature is None):
            raise ValueError("a route matches exactly one of a header or a feature")
        if self.header is not None:
            if self.index is not None or self.equals is not None or self.in_ is not None:
                raise ValueError("a header route sets exact or regex, not index, equals or in")
            HeaderRoute(header=self.header, exact=self.exact, regex=self.regex)  # its rules
        else:
            if self.exact is not None or self.regex is not None:
                raise ValueError("a feature route sets equals or in, not exact or regex")
            if (self.equals is None) == (self.in_ is None):
                raise ValueError(f"the route on feature {self.feature!r} sets exactly one of equals or in")
        return self

    def header_route(self) -> HeaderRoute | None:
        return None if self.header is None else HeaderRoute(header=self.header, exact=self.exact, regex=self.regex)


class Mirror(ContractModel):
    source: str = Field(alias="from", description="Requests this backend answered with 2xx are copied.")
    to: str = Field(description="The backend the copies go to, whose answers are compared.")
    percent: int = Field(ge=0, le=100)


class Fallback(ContractModel):
    to: list[str] = Field(min_length=1, max_length=MAX_CHAIN, description="Backends tried in order.")
    latency_budget_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Try the next backend when this one has not answered by then."
    )


Combine = Literal["mean", "weighted", "vote"]
MEAN: Combine = "mean"
WEIGHTED: Combine = "weighted"
VOTE: Combine = "vote"


class Ensemble(ContractModel):
    members: list[str] = Field(
        min_length=2, max_length=MAX_BACKENDS, description="Backends asked at once; on a tie the first wins."
    )
    combine: Combine = Field(default=MEAN, description="mean | weighted | vote: how answers become one.")
    weights: dict[str, float] | None = Field(
        default=None, description="member -> its weight (> 0): required by weighted, optional for vote."
    )
    quorum: int | None = Field(default=None, ge=1, description="Answers needed (default: every member).")
    member_timeout_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="How long each member is waited for (default: timeoutSeconds)."
    )
    version: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="The ensemble's version label (default: its members' versions joined by '+').",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Ensemble:
        if len(set(self.members)) != len(self.members):
            raise ValueError("members names a backend twice")
        if self.quorum is not None and self.quorum > len(self.members):
            raise ValueError(f"quorum {self.quorum} is more than the {len(self.members)} members")
        if self.combine == WEIGHTED and self.weights is None:
            raise ValueError("combine weighted needs weights: member -> weight")
        if self.combine == MEAN and self.weights is not None:
            raise ValueError("combine mean counts every member alike; use combine weighted with weights")
        if self.weights is not None:
            if set(self.weights) != set(self.members):
                raise ValueError("weights must give exactly the members a weight each")
            for member, weight in self.weights.items():
                if not weight > 0:
                    raise ValueError(f"weights.{member} must be above 0, got {weight:g}")
        return self

    @property
    def needed(self) -> int:
        return len(self.members) if self.quorum is None else self.quorum


class RouterConfigV2(ContractModel):
    """Version 2 of the routing document."""

    schema_version: Literal[2] = SCHEMA_VERSION_2
    route: str = Field(min_length=1, max_length=253)
    control: str = Field(description="A name in backends: requests without their sticky key go there.")
    backends: dict[str, BackendV2] = Field(min_length=1, max_length=MAX_BACKENDS)
    split: list[Share] = Field(min_length=1, max_length=MAX_BACKENDS)
    sticky_by: StickyBy | None = Field(default=None, description="Split users by this header or cookie value.")
    routes: list[Route] = Field(default_factory=list, max_length=MAX_ROUTES)
    mirror: Mirror | None = None
    fallbacks: dict[str, Fallback] = Field(default_factory=dict)
    ensembles: dict[str, Ensemble] = Field(default_factory=dict, max_length=MAX_ENSEMBLES)
    timeout_seconds: float = Field(default=10.0, gt=0, le=3600, description="Per upstream call.")

    @model_validator(mode="after")
    def _consistent(self) -> RouterConfigV2:
        for name in self.backends:
            if not BACKEND_NAME.fullmatch(name):
                raise ValueError(f"backends: {name!r} is not a backend name (a DNS label: a-z, 0-9 and '-')")
            if name == SHADOW_ROLE:
                raise ValueError(f"backends: {SHADOW_ROLE!r} is the role of mirrored calls; name the backend otherwise")
        for name, ensemble in self.ensembles.items():
            self._check_ensemble(name, ensemble)
        self._known("control", self.control)
        self._check_split()
        for i, route in enumerate(self.routes):
            self._known(f"routes[{i}].to", route.to)
        if self.mirror is not None:
            self._backend("mirror.from", self.mirror.source)
            self._backend("mirror.to", self.mirror.to)
            if self.mirror.source == self.mirror.to:
                raise ValueError(f"mirror copies {self.mirror.source!r}'s requests to itself")
        for name, chain in self.fallbacks.items():
            self._check_chain(name, chain)
        return self

    def _known(self, where: str, name: str) -> None:
        """`name` is a backend or an ensemble."""
        if name not in self.backends and name not in self.ensembles:
            known = ", ".join([*self.backends, *self.ensembles])
            raise ValueError(f"{where} names backend {name!r}, which is not in backends or ensembles ({known})")

    def _backend(self, where: str, name: str) -> None:
        """`name` is a backend (not an ensemble)."""
        if name in self.ensembles:
            raise ValueError(f"{where} names ensemble {name!r}; only a backend can be named there")
        self._known(where, name)

    def _check_ensemble(self, name: str, ensemble: Ensemble) -> None:
        if not BACKEND_NAME.fullmatch(name) or name == SHADOW_ROLE:
            raise ValueError(f"ensembles: {name!r} is not an ensemble name (a DNS label other than {SHADOW_ROLE!r})")
        if name in self.backends:
            raise ValueError(f"ensembles: {name!r} is also a backend's name; the two share one space")
        for member in ensemble.members:
            self._backend(f"ensembles.{name}.members", member)
        wait = ensemble.member_timeout_seconds
        if wait is not None and wait > self.timeout_seconds:
            raise ValueError(
                f"ensembles.{name}.memberTimeoutSeconds ({wait:g}) must not be above timeoutSeconds "
                f"({self.timeout_seconds:g})"
            )

    def _check_split(self) -> None:
        seen: set[str] = set()
        for share in self.split:
            self._known("split", share.backend)
            if share.backend in seen:
                raise ValueError(f"split lists backend {share.backend!r} twice")
            seen.add(share.backend)
        total = sum(share.weight for share in self.split)
        if total != 100:
            raise ValueError(f"split weights must add up to 100, got {total}")

    def _check_chain(self, name: str, chain: Fallback) -> None:
        self._known("fallbacks", name)
        for target in chain.to:
            self._known(f"fallbacks.{name}.to", target)
        if name in chain.to:
            raise ValueError(f"fallbacks.{name}.to names {name!r} itself")
        if len(set(chain.to)) != len(chain.to):
            raise ValueError(f"fallbacks.{name}.to names a backend twice")
        budget = chain.latency_budget_seconds
        if budget is not None and budget >= self.timeout_seconds:
            raise ValueError(
                f"fallbacks.{name}.latencyBudgetSeconds ({budget:g}) must be below timeoutSeconds "
                f"({self.timeout_seconds:g}), or the budget never cuts a call short"
            )

    def targets(self) -> list[str]:
        """Every name a request can be sent to: the backends, then the ensembles."""
        return [*self.backends, *self.ensembles]

    def weight_of(self, backend: str) -> int:
        return next((share.weight for share in self.split if share.backend == backend), 0)


def upgrade(config: RouterConfig) -> RouterConfigV2:
    """The version 2 routing a version 1 document means: backends stable (and canary), the canary first in the
    split (its users' buckets are the lowest, as in version 1), the header route to the canary, the mirror from
    stable to the canary, retryOnStable as the canary's fallback to stable."""
    backends = {STABLE: BackendV2(url=config.backends.stable, version=config.versions.stable)}
    split = [Share(backend=STABLE, weight=config.weights.stable)]
    routes: list[Route] = []
    mirror = None
    fallbacks: dict[str, Fallback] = {}
    if config.backends.canary is not None and config.versions.canary is not None:
        backends[CANARY] = BackendV2(url=config.backends.canary, version=config.versions.canary)
        split.insert(0, Share(backend=CANARY, weight=config.weights.canary))
        if config.header_route is not None:
            header = config.header_route
            routes.append(Route(to=CANARY, header=header.header, exact=header.exact, regex=header.regex))
        if config.mirror_percent:
            mirror = Mirror(source=STABLE, to=CANARY, percent=config.mirror_percent)
        if config.retry_on_stable:
            fallbacks[CANARY] = Fallback(to=[STABLE])
    return RouterConfigV2(
        route=config.route,
        control=STABLE,
        backends=backends,
        split=split,
        sticky_by=config.sticky_by,
        routes=routes,
        mirror=mirror,
        fallbacks=fallbacks,
        timeout_seconds=config.timeout_seconds,
    )


def with_fallback(config: RouterConfigV2, backend: BackendV2, *, budget_seconds: float | None) -> RouterConfigV2:
    """`config` (a version 1 document's routing, see upgrade) with a fallback model behind it, as the operator writes
    a ModelDeployment's `online.fallback`: stable falls back on it; the canary on stable first when it already did
    (retryOnStable), then on it. Each chain waits `budget_seconds` for a backend that has a next one."""
    chains = {STABLE: Fallback(to=[FALLBACK], latency_budget_seconds=budget_seconds)}
    if CANARY in config.backends:
        before = config.fallbacks[CANARY].to if CANARY in config.fallbacks else []
        chains[CANARY] = Fallback(to=[*before, FALLBACK], latency_budget_seconds=budget_seconds)
    body = config.model_dump(exclude={"backends", "fallbacks"})
    return RouterConfigV2.model_validate(
        body | {"backends": {**config.backends, FALLBACK: backend}, "fallbacks": chains}
    )


def with_graph(
    config: RouterConfigV2,
    members: dict[str, BackendV2],
    *,
    ensemble: Ensemble | None,
    routes: list[Route],
    variants: list[tuple[str, int]] | None = None,
    sticky_by: StickyBy | None = None,
) -> RouterConfigV2:
    """`config` (see upgrade and with_fallback) with a ModelDeployment's serving graph: `members` (other models, by
    the backend names they get) beside stable and the canary; `routes` to them after the canary's header route; and
    either an `ensemble` of members where `self` stands for the ModelDeployment's own model, or an A/B/n split.

    The ensemble answers in stable's place, and, as ENSEMBLE_CANARY with the canary in the place of `self`, in the
    canary's: wherever the rollout sends a request (split, header route, fallback chains), its own model is asked
    together with the other members, so a new version rolls out as a member of the ensemble.

    `variants` (name, percent; `self` is stable, whose rollout is direct meanwhile) replace the split, users kept on
    one by `sticky_by`: an A/B/n test, whose order is the order of the users' bucket ranges."""
    clash = (set(members) & set(config.backends)) | ({SELF, ENSEMBLE, ENSEMBLE_CANARY} & set(members))
    if clash:
        raise ValueError(f"graph members {sorted(clash)} take names the operator's routing uses")
    body = config.model_dump(exclude={"backends", "routes", "ensembles"})
    body |= {"backends": {**config.backends, **members}, "routes": [*config.routes, *routes]}
    if variants is not None:
        if ensemble is not None:
            raise ValueError("an A/B/n split sends each user to one variant; an ensemble asks them all")
        if config.weight_of(CANARY):
            raise ValueError("an A/B/n split keeps the ModelDeployment's own model on stable: no canary weight")
        split = [{"backend": STABLE if name == SELF else name, "weight": weight} for name, weight in variants]
        if CANARY in config.backends:
            split.insert(0, {"backend": CANARY, "weight": 0})
        body |= {"split": split, "sticky_by": sticky_by, "control": STABLE}
    if ensemble is None:
        return RouterConfigV2.model_validate(body)
    if SELF not in ensemble.members:
        raise ValueError(f"the graph's ensemble must name {SELF!r}, the ModelDeployment's own model")
    if config.mirror is not None:
        raise ValueError("a mirror copies what stable answered, and with an ensemble stable never answers alone")

    def standing_for(role: str) -> Ensemble:
        def name(member: str) -> str:
            return role if member == SELF else member

        weights = None if ensemble.weights is None else {name(m): w for m, w in ensemble.weights.items()}
        return ensemble.model_copy(update={"members": [name(m) for m in ensemble.members], "weights": weights})

    ensembles = {_IN_PLACE[role]: standing_for(role) for role in (STABLE, CANARY) if role in config.backends}
    renamed = _retargeted(config, _IN_PLACE)
    renamed["routes"] += routes
    return RouterConfigV2.model_validate(body | renamed | {"ensembles": ensembles})


def _retargeted(config: RouterConfigV2, rename: dict[str, str]) -> dict[str, Any]:
    """`config`'s control, split, routes and fallback chains with every target named in `rename` renamed."""

    def to(name: str) -> str:
        return rename.get(name, name)

    return {
        "control": to(config.control),
        "split": [share.model_copy(update={"backend": to(share.backend)}) for share in config.split],
        "routes": [route.model_copy(update={"to": to(route.to)}) for route in config.routes],
        "fallbacks": {
            to(name): chain.model_copy(update={"to": [to(t) for t in chain.to]})
            for name, chain in config.fallbacks.items()
        },
    }


def downgrade(config: RouterConfigV2) -> RouterConfig:
    """The version 1 routing inside a version 2 document the operator wrote (upgrade, then with_fallback and
    with_graph): stable and canary, their weights, header route, mirror, stickiness, timeout and whether the canary
    falls back on stable. What version 1 cannot say (the fallback model, the graph) is left out; RouterConfigError
    when there is no stable. Where the graph's ensembles stand for stable and the canary, they are read as them."""
    if STABLE not in config.backends:
        raise RouterConfigError(f"{CONFIG_KEY} has no {STABLE!r} backend, so it is not a document the operator wrote")
    if ENSEMBLE in config.ensembles:
        body = config.model_dump(exclude={"ensembles"})
        config = RouterConfigV2.model_validate(body | _retargeted(config, _AS_ROLES))
    stable, canary = config.backends[STABLE], config.backends.get(CANARY)
    header = next((r.header_route() for r in config.routes if r.to == CANARY and r.header is not None), None)
    mirror = config.mirror
    chain = config.fallbacks.get(CANARY)
    try:
        return RouterConfig(
            route=config.route,
            backends=Backends(stable=stable.url, canary=None if canary is None else canary.url),
            versions=Versions(stable=stable.version, canary=None if canary is None else canary.version),
            # Stable is the rest: beside an A/B/n split of a graph, stable's own share is below 100 - canary.
            weights=Weights(stable=100 - config.weight_of(CANARY), canary=config.weight_of(CANARY)),
            mirror_percent=mirror.percent
            if mirror is not None and (mirror.source, mirror.to) == (STABLE, CANARY)
            else 0,
            header_route=header,
            sticky_by=config.sticky_by,
            timeout_seconds=config.timeout_seconds,
            retry_on_stable=chain is not None and chain.to[0] == STABLE,
        )
    except ValidationError as exc:
        raise RouterConfigError(f"{CONFIG_KEY} cannot be read as stable and canary: {exc}") from None


def parse_any(text: str | bytes) -> RouterConfigV2:
    """A version 1 or version 2 document in `text`, as version 2; RouterConfigError says why it cannot be used."""
    body = json_object(text)
    version = body.get("schemaVersion")
    if type(version) is int and version == SCHEMA_VERSION:
        return upgrade(validated(RouterConfig, body))
    if type(version) is int and version == SCHEMA_VERSION_2:
        return validated(RouterConfigV2, body)
    raise RouterConfigError(
        f"{CONFIG_KEY} has schemaVersion {version!r}; this reader knows {SCHEMA_VERSION} and {SCHEMA_VERSION_2}"
    )


def to_document_v2(config: RouterConfigV2) -> str:
    """The document's text, the same bytes for the same routing (sorted keys, no spaces)."""
    body = config.model_dump(by_alias=True, exclude_none=True, mode="json")
    return json.dumps(body, sort_keys=True, separators=(",", ":"))
