"""The sequential judge, pure: a mixture sequential probability ratio test (mSPRT) on counts of bad events.

Model. In a window the canary serves n_c requests of which b_c are bad (errors, or slower than an SLO bucket
edge), stable n_s and b_s. Bad events are rare and independent, so given the B = b_c + b_s bad events of the
window, each one is the canary's with probability theta(r) = r*pi / (r*pi + 1 - pi), where pi = n_c/(n_c + n_s)
is the canary's share of the traffic and r = p_c/p_s its bad-event rate relative to stable (r = 1: no change).
Conditioning on the window's totals cancels everything the two revisions share: load, drift, seasonality,
spikes that hit both. The share may change from window to window (canary steps); the likelihood multiplies.

State. log L(r) = sum over windows of b_c log(theta/pi) + b_s log((1-theta)/(1-pi)), kept on a fixed grid of
r (GRID). It is all the test needs and it is additive, so it lives in status (MetricResult.evidence) and every
run adds one window: restart-safe, no memory in the operator.

Decisions (Robbins' mixture martingale, always valid: it may be checked after every scrape):
- Failed as soon as the mixture over regressions (r > 1, half-normal prior on log r) reaches 1/alpha: under any
  r <= 1 it is a nonnegative supermartingale, so P(ever crossing) <= alpha (Ville's inequality).
- The confidence sequence {r_j: sum_k w_k L(r_k)/L(r_j) < 1/alpha} covers the true r at all times with
  probability >= 1 - alpha; Successful once its upper end is below 1 + tolerance (the tolerated regression).
- Successful also once the canary's own bad-event rate is certainly below an absolute limit (`max_rate`: the
  metric's max for errors; 1% of requests slower than max for p99, 5% for p95): when stable has few or no bad
  events the relative test has nothing to compare and can never promote, but a clean canary can. The bound is
  always valid too: for the cumulative canary counts (b bad of n), the mixture over rates p < p0 (uniform
  prior) of the likelihood ratios p^b (1-p)^(n-b) / (p0^b (1-p0)^(n-b)),
      E(p0) = B(b+1, n-b+1) I_p0(b+1, n-b+1) / (p0 * p0^b (1-p0)^(n-b))   (I: the regularised incomplete beta),
  is a nonnegative supermartingale whenever the rate of every request is >= p0 (each factor's mean is <= 1), so
  it reaches 1/alpha with probability <= alpha: promoting once E(max_rate) >= 1/alpha promotes a canary whose
  rate is above max with probability <= alpha, however often it is checked and even if the rate drifts. The
  reported upper bound is the smallest p0 with E(p0) >= 1/alpha (E grows with p0 there). At b = 0 it is the
  root of e^x / x ~ 1/alpha in x = n p0: 4.5/n at alpha 0.05, near the fixed-sample -ln(alpha)/n = 3/n.
- Inconclusive otherwise, and always for a window without enough canary traffic: a gap adds no evidence and
  must never promote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaln
from scipy.stats import norm

from modelrollout.api.status import Verdict

FloatArray = npt.NDArray[np.float64]

# Rate ratios from 1/4 to 16, 9% apart (the resolution of the confidence bounds), r = 1 among them.
GRID_POINTS = 49  # (49 - 1) divisible by 3: r = 1 is a grid point
GRID: FloatArray = np.exp(np.linspace(math.log(0.25), math.log(16.0), GRID_POINTS))
PRIOR_SD = 1.0  # of log r: puts the mixture's power on doublings, the regressions worth catching fast
_LOG_PRIOR: FloatArray = -0.5 * (np.log(GRID) / PRIOR_SD) ** 2
_LOG_PRIOR -= np.logaddexp.reduce(_LOG_PRIOR)
_UP = GRID > 1.0 + 1e-9
_LOG_PRIOR_UP: FloatArray = _LOG_PRIOR[_UP] - np.logaddexp.reduce(_LOG_PRIOR[_UP])
STATE_PREFIX = "llr@"
STATE_KEYS = tuple(f"{STATE_PREFIX}{r:.4f}" for r in GRID)


@dataclass(frozen=True, slots=True)
class Counts:
    """One window's requests and bad events per revision (floats: Prometheus' increases need not be whole)."""

    canary_bad: float
    canary_total: float
    stable_bad: float
    stable_total: float


@dataclass(frozen=True, slots=True)
class SequentialVerdict:
    verdict: Verdict
    message: str
    log_likelihood: FloatArray  # the new state, log L(r) on GRID
    log_e: float  # log of the mixture e-value against "no regression"
    lower: float  # confidence sequence on r; upper is inf when it reaches the grid's top
    upper: float
    estimate: float  # the grid's maximum-likelihood r
    rate: RateBound | None = None  # the absolute bound on the canary's own rate, when the metric has a limit


@dataclass(frozen=True, slots=True)
class RateBound:
    """The always-valid bound on the canary's own bad-event rate from its cumulative counts."""

    bad: float  # b, canary bad events so far
    requests: float  # n, canary requests so far
    upper: float  # the smallest p0 with E(p0) >= 1/alpha (1.0: none)
    limit: float  # max_rate
    log_e: float  # log E(limit): the evidence that the rate is below the limit

    @property
    def below(self) -> bool:
        return self.upper <= self.limit


def empty_state() -> FloatArray:
    return np.zeros(GRID_POINTS)


def window_log_likelihood(counts: Counts) -> FloatArray:
    """log L(r) of one window on GRID (zeros when one revision had no traffic: nothing to compare)."""
    n_c, n_s = max(counts.canary_total, 0.0), max(counts.stable_total, 0.0)
    b_c = min(max(counts.canary_bad, 0.0), n_c)
    b_s = min(max(counts.stable_bad, 0.0), n_s)
    if n_c <= 0 or n_s <= 0 or b_c + b_s <= 0:
        return np.zeros(GRID_POINTS)
    share = n_c / (n_c + n_s)
    theta = GRID * share / (GRID * share + 1.0 - share)
    return np.asarray(b_c * np.log(theta / share) + b_s * np.log((1.0 - theta) / (1.0 - share)), dtype=np.float64)


def log_e_value(log_likelihood: FloatArray) -> float:
    """log of the mixture likelihood ratio of "regression" (r > 1) against r = 1."""
    return float(np.logaddexp.reduce(log_likelihood[..., _UP] + _LOG_PRIOR_UP, axis=-1))


def confidence_sequence(log_likelihood: FloatArray, alpha: float) -> tuple[float, float]:
    """(lower, upper) of the always-valid confidence set on r; an end at the grid's edge is 0 or inf."""
    mixture = np.logaddexp.reduce(log_likelihood + _LOG_PRIOR)
    inside = np.nonzero(mixture - log_likelihood < math.log(1.0 / alpha))[0]
    if inside.size == 0:  # cannot happen with a proper prior; be safe rather than promote
        return 0.0, math.inf
    lo, hi = int(inside[0]), int(inside[-1])
    return (0.0 if lo == 0 else float(GRID[lo])), (math.inf if hi == GRID_POINTS - 1 else float(GRID[hi]))


def log_rate_e_value(bad: float, requests: float, p0: float) -> float:
    """log E(p0): evidence that the canary's rate is below p0, from b = `bad` of n = `requests` (module docs)."""
    n = max(requests, 0.0)
    b = min(max(bad, 0.0), n)
    if n <= 0 or not 0.0 < p0 < 1.0:
        return 0.0 if n <= 0 else (math.inf if p0 >= 1.0 else -math.inf)
    mass = float(betainc(b + 1.0, n - b + 1.0, p0))
    if mass <= 0.0:
        return -math.inf
    log_mixture = float(betaln(b + 1.0, n - b + 1.0)) + math.log(mass) - math.log(p0)
    return log_mixture - b * math.log(p0) - (n - b) * math.log1p(-p0)


def rate_upper_bound(bad: float, requests: float, alpha: float) -> float:
    """The smallest p0 at which the evidence that the rate is below p0 reaches 1/alpha (1.0 when none does)."""
    n = max(requests, 0.0)
    b = min(max(bad, 0.0), n)
    threshold = math.log(1.0 / alpha)
    if n <= 0:
        return 1.0
    # Above (b + 1)/(n + 1) log E grows with p0 (the likelihood ratio's growth outweighs the prior's), and below
    # it E is small: bisect between there and 1 (in log p0, to resolve the small rates that matter).
    lo = min((b + 1.0) / (n + 1.0), 1.0 - 1e-12)
    if log_rate_e_value(b, n, lo) >= threshold:
        return lo
    hi = 1.0 - 1e-12
    if log_rate_e_value(b, n, hi) < threshold:
        return 1.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if log_rate_e_value(b, n, mid) >= threshold:
            hi = mid
        else:
            lo = mid
    return hi


def rate_bound(bad: float, requests: float, *, limit: float, alpha: float) -> RateBound:
    upper = rate_upper_bound(bad, requests, alpha)
    log_e = log_rate_e_value(bad, requests, limit)
    # The decision is E(limit) >= 1/alpha (exactly valid); the bound says the same in a rate, so they agree.
    below = log_e >= math.log(1.0 / alpha)
    upper = min(upper, limit) if below else max(upper, math.nextafter(limit, 1.0))
    return RateBound(bad, requests, upper, limit, log_e)


def decide(
    state: FloatArray,
    window: Counts,
    *,
    alpha: float,
    tolerance: float,
    min_requests: float,
    max_rate: float | None = None,
    canary_before: tuple[float, float] = (0.0, 0.0),
) -> SequentialVerdict:
    """Add `window` to `state` and decide. `tolerance`: the largest tolerated relative increase of the bad-event
    rate (0.5: up to 1.5 times stable's); `min_requests`: canary requests the window needs to count as data.
    `max_rate`: the absolute limit on the canary's bad-event rate (None: none, only the comparison with stable
    can promote); `canary_before`: the canary's (bad, requests) counted before this window."""
    rate = None
    if max_rate is not None:
        bad = canary_before[0] + max(window.canary_bad, 0.0)
        requests = canary_before[1] + max(window.canary_total, 0.0)
        rate = rate_bound(bad, requests, limit=max_rate, alpha=alpha)
    llr = state + window_log_likelihood(window)
    log_e = log_e_value(llr)
    lower, upper = confidence_sequence(llr, alpha)
    estimate = float(GRID[int(np.argmax(llr))])
    threshold = math.log(1.0 / alpha)
    verdict: Verdict
    if log_e >= threshold:
        verdict = "Failed"
        message = (
            f"regression: evidence {math.exp(min(log_e, 700.0)):.3g} >= 1/alpha = {1 / alpha:g}; "
            f"bad-event rate {_ratio(lower)}..{_ratio(upper)} times stable's"
        )
    elif window.canary_total < min_requests:
        verdict = "Inconclusive"
        message = f"only {window.canary_total:g} canary requests in the window, fewer than {min_requests:g}"
    elif upper < 1.0 + tolerance:
        verdict = "Successful"
        message = f"bad-event rate at most {_ratio(upper)} times stable's (tolerated {1 + tolerance:g})"
    elif rate is not None and rate.below:
        verdict = "Successful"
        message = (
            f"canary's bad-event rate at most {rate.upper:.3g} ({rate.bad:g} of {rate.requests:g} requests) <= "
            f"{rate.limit:g}; compared with stable {_ratio(lower)}..{_ratio(upper)} times its rate"
        )
    else:
        verdict = "Inconclusive"
        message = (
            f"bad-event rate {_ratio(lower)}..{_ratio(upper)} times stable's; promotes below {1 + tolerance:g}, "
            f"rolls back at evidence {1 / alpha:g} (now {math.exp(min(log_e, 700.0)):.3g})"
        )
        if rate is not None:
            message += (
                f"; canary's own rate at most {rate.upper:.3g} ({rate.bad:g} of {rate.requests:g}), "
                f"promotes at {rate.limit:g}"
            )
    return SequentialVerdict(verdict, message, llr, log_e, lower, upper, estimate, rate)


def _ratio(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"


def state_evidence(state: FloatArray) -> dict[str, float]:
    return {key: float(v) for key, v in zip(STATE_KEYS, state, strict=True)}


def state_from_evidence(evidence: Mapping[str, float] | None) -> FloatArray | None:
    """The test's state stored by an earlier run, or None when that run stored none (or another grid)."""
    if not evidence or any(key not in evidence for key in STATE_KEYS):
        return None
    return np.array([evidence[key] for key in STATE_KEYS], dtype=np.float64)


def two_proportion_sample_size(
    p1: float, p2: float, *, alpha: float = 0.05, power: float = 0.8, pooled: bool = False
) -> int:
    """Requests per arm a fixed-horizon two-sided two-proportion z-test needs: the yardstick the sequential
    judge is compared with. Unpooled: (z_a + z_b)^2 (p1 q1 + p2 q2) / (p2 - p1)^2; pooled uses the common rate's
    variance for the z_a term (the textbook tables' other convention, a few requests more)."""
    z_a, z_b = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    spread = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    if pooled:
        mean = (p1 + p2) / 2
        numerator = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * spread
    else:
        numerator = (z_a + z_b) * spread
    return math.ceil(numerator**2 / (p2 - p1) ** 2)
