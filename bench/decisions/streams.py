"""Seeded per-scrape metric streams for a stable and a canary revision, vectorised over seeds (numpy).

Per scrape (15 s) and revision: requests ~ Poisson(rate * share * 15 s), errors ~ Binomial(requests, p), and the
request-duration histogram's bucket counts ~ Multinomial(requests, bucket probabilities) over the model
server's buckets (modelserver.metrics.LATENCY_BUCKETS), so latency quantiles are computed the way Prometheus'
histogram_quantile does. Latency is heavy-tailed: lognormal (median 60 ms, sigma 0.61: p99 about 0.25 s) with
0.3% of requests from a Pareto tail (x_m 0.3 s, shape 1.5). Effects: a canary error-rate ratio and latency
factor (the regression), shared slow drift of the error rate, daily seasonality of the traffic (a random phase
per seed), short shared spikes (errors x5 and latency x3 for 2 minutes, both revisions: an upstream blip), and
zero-traffic gaps (no request to either revision for 10 minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.stats import lognorm, pareto

from modelrollout.analysis.queries import LATENCY_BUCKET_EDGES

SCRAPE_S = 15
EDGES = np.array(LATENCY_BUCKET_EDGES)
MEDIAN_S, SIGMA, TAIL_SHARE, TAIL_XM, TAIL_SHAPE = 0.06, 0.6137, 0.003, 0.3, 1.5
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Scenario:
    name: str
    share: float = 0.2  # canary's share of the traffic
    rate_rps: float = 100.0  # both revisions together
    error_rate: float = 0.01  # stable's
    error_ratio: float = 1.0  # canary's error rate / stable's
    latency_factor: float = 1.0  # canary's latencies * this (every quantile)
    drift: float = 0.0  # shared error rate grows by this fraction per hour
    seasonality: float = 0.0  # traffic amplitude of a 24 h sine (random phase per seed)
    spikes: bool = False
    gap: bool = False  # 10 minutes without traffic, starting 3 minutes in
    minutes: int = 120
    error_max: float | None = None  # an absolute max on the errors metric (every judge), as an SLO would set
    tags: tuple[str, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        return self.error_ratio == 1.0 and self.latency_factor == 1.0

    @property
    def scrapes(self) -> int:
        return self.minutes * 60 // SCRAPE_S


@dataclass
class Streams:
    """Per seed and scrape: requests, errors, histogram bucket counts (last column: slower than 10 s)."""

    requests: Ints  # (revision, seed, scrape); revision 0 stable, 1 canary
    errors: Ints
    buckets: Ints  # (revision, seed, scrape, bucket)
    gap: npt.NDArray[np.bool_]  # (scrape,) inside a zero-traffic gap


def bucket_probabilities(factor: float, slowdown: float = 1.0) -> npt.NDArray[np.float64]:
    """P(latency in each bucket), cumulative edges then +Inf, for latencies multiplied by factor * slowdown."""
    scale = factor * slowdown
    body = lognorm.cdf(EDGES / scale, SIGMA, scale=MEDIAN_S)
    tail = pareto.cdf(EDGES / scale, TAIL_SHAPE, scale=TAIL_XM)
    cdf = np.append((1 - TAIL_SHARE) * body + TAIL_SHARE * tail, 1.0)
    return np.diff(np.concatenate([[0.0], cdf]))


def generate(s: Scenario, seeds: int, seed: int) -> Streams:
    rng = np.random.default_rng(seed)
    t_h = np.arange(s.scrapes) * SCRAPE_S / 3600.0
    phase = rng.uniform(0, 2 * math.pi, size=(seeds, 1))
    load = 1.0 + s.seasonality * np.sin(2 * math.pi * t_h[None, :] / 24.0 + phase)  # (seed, scrape)
    gap = np.zeros(s.scrapes, dtype=bool)
    if s.gap:
        gap[3 * 60 // SCRAPE_S : 13 * 60 // SCRAPE_S] = True
    load = np.where(gap[None, :], 0.0, load)
    spike = np.zeros((seeds, s.scrapes), dtype=bool)
    if s.spikes:  # two 2-minute spikes at random times per seed
        for _ in range(2):
            start = rng.integers(0, s.scrapes - 8, size=seeds)
            offsets = np.arange(s.scrapes)[None, :] - start[:, None]
            spike |= (offsets >= 0) & (offsets < 8)
    p_err = s.error_rate * (1 + s.drift * t_h)[None, :] * np.where(spike, 5.0, 1.0)
    requests = np.empty((2, seeds, s.scrapes), dtype=np.int64)
    errors = np.empty_like(requests)
    buckets = np.empty((2, seeds, s.scrapes, len(EDGES) + 1), dtype=np.int64)
    calm, slow = {}, {}
    for rev, (share, ratio, factor) in enumerate(((1 - s.share, 1.0, 1.0), (s.share, s.error_ratio, s.latency_factor))):
        requests[rev] = rng.poisson(s.rate_rps * share * SCRAPE_S * load)
        errors[rev] = rng.binomial(requests[rev], np.minimum(p_err * ratio, 1.0))
        calm[rev], slow[rev] = bucket_probabilities(factor), bucket_probabilities(factor, 3.0)
        buckets[rev] = rng.multinomial(requests[rev], calm[rev])
        if spike.any():
            spiked = rng.multinomial(requests[rev][spike], slow[rev])
            buckets[rev][spike] = spiked
    return Streams(requests=requests, errors=errors, buckets=buckets, gap=gap)


def histogram_quantile(q: float, buckets: Ints) -> npt.NDArray[np.float64]:
    """Prometheus' histogram_quantile over the last axis (per-bucket counts, +Inf last): linear interpolation
    inside the bucket holding the rank, the highest finite edge when it is +Inf's, NaN without observations."""
    cumulative = np.cumsum(buckets, axis=-1).astype(float)
    total = cumulative[..., -1]
    rank = q * total
    index = np.argmax(cumulative >= rank[..., None], axis=-1)
    lower_edges = np.concatenate([[0.0], EDGES])
    upper_edges = np.concatenate([EDGES, [np.inf]])
    below = np.where(index > 0, np.take_along_axis(cumulative, np.maximum(index - 1, 0)[..., None], -1)[..., 0], 0.0)
    inside = np.take_along_axis(buckets, index[..., None], -1)[..., 0].astype(float)
    lo, hi = lower_edges[index], upper_edges[index]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(np.isinf(hi), EDGES[-1], lo + (hi - lo) * (rank - below) / inside)
    return np.where(total > 0, value, np.nan)
