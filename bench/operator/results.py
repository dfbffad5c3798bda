"""What one bench run measured (pure data): written to raw/results.json after every measured run, read back by
`report` to render the results page again without measuring."""

from __future__ import annotations

from bench.operator.stats import Counted, RequestKey, Summary
from pydantic import BaseModel, Field


class RequestRow(BaseModel):
    verb: str
    resource: str
    scope: str
    code: str
    count: float

    @classmethod
    def rows(cls, counts: dict[Counted, float]) -> list[RequestRow]:
        return [
            cls(verb=c.key.verb, resource=c.key.resource, scope=c.key.scope, code=c.code, count=v)
            for c, v in sorted(counts.items())
        ]


class Window(BaseModel):
    """Requests counted by the API server, and /proc of the operator and the API server, over `seconds`."""

    seconds: float
    requests: list[RequestRow]
    operator_cpu_s: float | None = None  # None: no operator ran in this window
    operator_rss_kib: int | None = None  # the largest VmRSS sampled in the window
    apiserver_cpu_s: float | None = None
    # The operator's own count of its requests over the window (its modelrollout_api_requests_total, by verb):
    # what it asked, whoever else the API server served meanwhile. None: not scraped (an older run, no operator).
    operator_requests: dict[str, float] | None = None

    def counts(self) -> dict[Counted, float]:
        return {Counted(RequestKey(r.verb, r.resource, r.scope), r.code): r.count for r in self.requests}


class Convergence(BaseModel):
    cap_s: float
    seconds: float | None  # until every ModelDeployment was converged at once; None: not within the cap
    converged: int  # at the end (all, or how many at the cap)
    first_s: float | None  # the first one (the operator's start-up shows here)
    half_s: float | None
    p90_s: float | None
    operator_cpu_s: float | None
    curve: list[tuple[float, int]] = Field(default_factory=list)  # (seconds since the operator started, converged)
    by_flavor: dict[str, Summary] = Field(default_factory=dict)  # seconds to each one's first convergence
    children_missing: dict[str, int] = Field(default_factory=dict)  # kind -> ModelDeployments without it


class ReactionSample(BaseModel):
    namespace: str
    name: str
    flavor: str
    patch_s: float  # the PATCH's round trip
    latency_s: float | None  # None: no new revision's Deployment within the timeout


class TickRow(BaseModel):
    subject: str
    step: int
    status_s: float | None
    routing_s: float | None


class Ticks(BaseModel):
    pause_s: float
    expected: int  # timed pauses in the rollouts driven
    samples: list[TickRow] = Field(default_factory=list)


class RunResult(BaseModel):
    label: str  # before / after
    tree: str  # what code ran: a commit, or a working tree
    size: int
    namespaces: int
    watch: str  # all namespaces, or the bench's namespaces
    mix: dict[str, int]
    started: str
    took_s: float
    applied_s: float  # creating the ModelDeployments (before the operator started)
    convergence: Convergence
    steady: Window | None = None
    baseline: Window | None = None  # the same cluster after the operator stopped
    reaction: list[ReactionSample] = Field(default_factory=list)
    ticks: Ticks | None = None
    peak_rss_kib: int | None = None  # VmHWM of the operator when it was stopped
    exit_code: int | None = None
    notes: list[str] = Field(default_factory=list)

    def reaction_summary(self) -> Summary | None:
        return Summary.of([s.latency_s for s in self.reaction if s.latency_s is not None])

    def tick_summary(self, which: str) -> Summary | None:
        if self.ticks is None:
            return None
        values = [getattr(row, which) for row in self.ticks.samples]
        return Summary.of([v for v in values if v is not None])


class Settings(BaseModel):
    """How the bench was run (the page's set-up lines)."""

    trees: dict[str, str]  # label -> what code ran
    sizes: list[int]
    cluster: str
    nodes: int
    node_pods: int
    service_cidr: str
    namespaces: int
    watch: str
    cap_s: float
    settle_s: float
    steady_s: float
    baseline_s: float
    reaction_samples: int
    reaction_gap_s: float
    tick_rollouts: int
    pause_s: float
    seed: int


class BenchResults(BaseModel):
    command: str
    started: str
    finished: str | None = None
    machine: dict[str, str]
    load_before: str
    load_after: str | None = None
    settings: Settings
    runs: list[RunResult] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)  # runs that failed, and why
