"""The A/B test's statistics: is the candidate's (B) success rate different from stable's (A)? Pure code.

Two tests, chosen by spec.rollout.abTest.test:

- `twoProportion`: the classical pooled two-proportion z-test, with Newcombe's hybrid score interval (method 10
  of Newcombe 1998) for the difference, which stays inside [-1, 1] and behaves at small rates where the Wald
  interval does not. It is a fixed-sample test: checking it after every interval (as an A/B test that "ends when
  significant" does) raises the chance of a false winner above alpha. Use it with a `minSamples` near the
  planned sample size, or use `sequential`.
- `sequential`: the mixture sequential probability ratio test of Johari et al. ("Always valid inference",
  2017; what Optimizely's stats engine runs) on the difference of rates, normal approximation, with a normal
  mixing prior N(0, tau^2). Its e-value may be checked after every scrape without inflating false winners, and
  its always-valid confidence interval is the set of effects the test does not reject.

The effect is always canary rate minus stable rate; a winner is declared only when both variants have at least
`minSamples` trials and the test is significant at `alpha`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from modelrollout.api.rollout import AbTestSettings
from modelrollout.api.status import AbTestResult, Interval

# The sequential test's mixing prior: a standard deviation of the effect of TAU_SHARE standard deviations of one
# trial's outcome (a "small" standardized effect of 0.1; Johari et al. tune it on past experiments, we have none).
TAU_SHARE = 0.1
Winner = Literal["stable", "canary"]


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's counts over the experiment so far."""

    successes: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials < 0 or not 0 <= self.successes <= self.trials:
            raise ValueError(f"need 0 <= successes <= trials, got {self.successes} of {self.trials}")

    @property
    def rate(self) -> float | None:
        return self.successes / self.trials if self.trials else None


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal, precise far into the tail (where 1 - cdf would round to 0)."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def _wilson(arm: Arm, z: float) -> tuple[float, float]:
    """Wilson score interval of one proportion."""
    n, p = arm.trials, arm.successes / arm.trials
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe_interval(stable: Arm, canary: Arm, alpha: float) -> Interval:
    """Newcombe's hybrid score interval for canary rate minus stable rate (both arms need trials)."""
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p1, p2 = stable.successes / stable.trials, canary.successes / canary.trials
    l1, u1 = _wilson(stable, z)
    l2, u2 = _wilson(canary, z)
    effect = p2 - p1
    return Interval(
        low=effect - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        high=effect + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )


def two_proportion_p_value(stable: Arm, canary: Arm) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1 when the pooled rate is 0 or 1: no variance)."""
    pooled = (stable.successes + canary.successes) / (stable.trials + canary.trials)
    variance = pooled * (1 - pooled) * (1 / stable.trials + 1 / canary.trials)
    if variance <= 0:
        return 1.0
    z = (canary.successes / canary.trials - stable.successes / stable.trials) / math.sqrt(variance)
    return min(1.0, 2 * _normal_sf(abs(z)))


@dataclass(frozen=True, slots=True)
class Msprt:
    e_value: float
    interval: Interval | None


def msprt(stable: Arm, canary: Arm, alpha: float) -> Msprt:
    """Mixture SPRT of "no difference", and the always-valid (1 - alpha) interval of the difference."""
    p1, p2 = stable.successes / stable.trials, canary.successes / canary.trials
    variance = p1 * (1 - p1) / stable.trials + p2 * (1 - p2) / canary.trials
    pooled = (stable.successes + canary.successes) / (stable.trials + canary.trials)
    tau2 = (TAU_SHARE**2) * pooled * (1 - pooled)
    if variance <= 0 or tau2 <= 0:
        return Msprt(e_value=1.0, interval=None)
    effect = p2 - p1
    ratio = variance / (variance + tau2)
    log_e = 0.5 * math.log(ratio) + effect * effect * tau2 / (2 * variance * (variance + tau2))
    half = math.sqrt(variance * (variance + tau2) / tau2 * (2 * math.log(1 / alpha) - math.log(ratio)))
    # exp overflows past ~709: such evidence is beyond any threshold anyway.
    return Msprt(e_value=math.exp(min(log_e, 700.0)), interval=Interval(low=effect - half, high=effect + half))


def evaluate(stable: Arm, canary: Arm, settings: AbTestSettings) -> AbTestResult:
    """The test's state on these counts, with `winner` set once the test is decided (never to "undecided":
    running out of time is the rollout's call, not the statistics')."""
    result = AbTestResult(
        samples_stable=stable.trials,
        samples_canary=canary.trials,
        rate_stable=stable.rate,
        rate_canary=canary.rate,
    )
    if stable.trials == 0 or canary.trials == 0:
        return result
    effect = canary.successes / canary.trials - stable.successes / stable.trials
    if settings.test == "sequential":
        test = msprt(stable, canary, settings.alpha)
        significant = test.e_value >= 1 / settings.alpha
        result = result.model_copy(update={"effect": effect, "e_value": test.e_value, "interval": test.interval})
    else:
        p_value = two_proportion_p_value(stable, canary)
        significant = p_value < settings.alpha
        interval = newcombe_interval(stable, canary, settings.alpha)
        result = result.model_copy(update={"effect": effect, "p_value": p_value, "interval": interval})
    enough = min(stable.trials, canary.trials) >= settings.min_samples
    if significant and enough and effect != 0:
        winner: Winner = "canary" if effect > 0 else "stable"
        result = result.model_copy(update={"winner": winner})
    return result


def describe(result: AbTestResult, settings: AbTestSettings) -> str:
    """One line for events and status: rates, effect with its interval, the test's statistic, samples."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    parts = [f"success stable {pct(result.rate_stable)} vs canary {pct(result.rate_canary)}"]
    if result.effect is not None:
        interval = f" [{100 * result.interval.low:+.2f}, {100 * result.interval.high:+.2f}]" if result.interval else ""
        parts.append(f"effect {100 * result.effect:+.2f} points{interval}")
    if result.p_value is not None:
        parts.append(f"p {result.p_value:.3g} (alpha {settings.alpha:g})")
    if result.e_value is not None:
        parts.append(f"e-value {result.e_value:.3g} (needs {1 / settings.alpha:g})")
    parts.append(f"samples {result.samples_stable}/{result.samples_canary} (min {settings.min_samples} each)")
    return ", ".join(parts)
