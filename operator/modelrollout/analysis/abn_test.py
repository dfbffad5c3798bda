"""An A/B/n test's decision: every variant against the control, corrected for the number of comparisons. Pure code.

Each variant is compared with the control by the A/B test's own statistics (ab_test: the pooled two-proportion
z-test, or the mixture SPRT's e-value). With k variants, k tests at alpha each find a false winner with a
probability of up to 1 - (1 - alpha)^k (14% for three variants at 5%), so the family of comparisons is corrected:

- `twoProportion`: Holm's step-down procedure (Holm 1979). The k p-values sorted ascending, the one of rank j (from
  0) is significant when it and every smaller one pass p < alpha / (k - j). It keeps the family-wise error rate at
  alpha whatever the dependence between the comparisons (they share the control's arm), and rejects everything
  Bonferroni's alpha / k would, and more.
- `sequential`: Bonferroni on the e-values, significant when e >= k / alpha. Ville's inequality bounds each
  e-process' chance of ever passing k / alpha by alpha / k; the union over k comparisons keeps the family-wise rate
  at alpha at any time the test is looked at, which is what makes checking it after every interval safe.

A variant is decided better or worse than the control only with at least `minSamples` trials on both sides. The
winner is the variant with the highest success rate among those significantly better than the control; the control
when every variant is significantly worse; otherwise the test is undecided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelrollout.analysis.ab_test import Arm, msprt, two_proportion_p_value
from modelrollout.api.rollout import SplitTest


@dataclass(frozen=True, slots=True)
class Comparison:
    """One variant against the control."""

    variant: str
    effect: float | None  # variant rate minus control rate; None without trials on a side
    statistic: float | None  # the p-value (twoProportion) or the e-value (sequential)
    threshold: float | None  # what the statistic had to pass after the correction (p below, e at or above)
    significant: bool  # different from the control after the correction, with minSamples on both sides

    @property
    def better(self) -> bool:
        return self.significant and self.effect is not None and self.effect > 0

    @property
    def worse(self) -> bool:
        return self.significant and self.effect is not None and self.effect < 0


@dataclass(frozen=True, slots=True)
class AbnResult:
    control: str
    comparisons: tuple[Comparison, ...]  # in the variants' order
    winner: str | None  # a variant, the control, or None while undecided


def evaluate(control: str, arms: Mapping[str, Arm], settings: SplitTest) -> AbnResult:
    """The test's state on these counts: `arms` holds the control's arm and every variant's."""
    if control not in arms:
        raise ValueError(f"the control {control!r} has no arm among {', '.join(arms)}")
    base = arms[control]
    variants = [name for name in arms if name != control]
    if not variants:
        raise ValueError("an A/B/n test compares at least one variant with the control")
    k = len(variants)
    raw: dict[str, tuple[float | None, float | None]] = {}
    for name in variants:
        arm = arms[name]
        if base.trials == 0 or arm.trials == 0:
            raw[name] = (None, None)
            continue
        effect = arm.successes / arm.trials - base.successes / base.trials
        if settings.test == "sequential":
            raw[name] = (effect, msprt(base, arm, settings.alpha).e_value)
        else:
            raw[name] = (effect, two_proportion_p_value(base, arm))
    thresholds, passed = (
        bonferroni_e(raw, k, settings.alpha) if settings.test == "sequential" else holm(raw, k, settings.alpha)
    )
    comparisons = tuple(
        Comparison(
            variant=name,
            effect=raw[name][0],
            statistic=raw[name][1],
            threshold=thresholds.get(name),
            significant=name in passed
            and raw[name][0] != 0
            and min(base.trials, arms[name].trials) >= settings.min_samples,
        )
        for name in variants
    )
    return AbnResult(control=control, comparisons=comparisons, winner=_winner(control, arms, comparisons))


def holm(
    raw: Mapping[str, tuple[float | None, float | None]], k: int, alpha: float
) -> tuple[dict[str, float], set[str]]:
    """Each variant's Holm threshold (alpha / (k - rank)) and the ones the step-down procedure rejects."""
    ranked = sorted((p, name) for name, (_, p) in raw.items() if p is not None)
    thresholds: dict[str, float] = {}
    passed: set[str] = set()
    stopped = False
    for rank, (p_value, name) in enumerate(ranked):
        # Variants without a p-value yet still count in k: the family is every comparison the test will make.
        thresholds[name] = alpha / (k - rank)
        stopped = stopped or p_value >= thresholds[name]
        if not stopped:
            passed.add(name)
    return thresholds, passed


def bonferroni_e(
    raw: Mapping[str, tuple[float | None, float | None]], k: int, alpha: float
) -> tuple[dict[str, float], set[str]]:
    threshold = k / alpha
    thresholds = {name: threshold for name, (_, e) in raw.items() if e is not None}
    return thresholds, {name for name, (_, e) in raw.items() if e is not None and e >= threshold}


def _winner(control: str, arms: Mapping[str, Arm], comparisons: tuple[Comparison, ...]) -> str | None:
    better = [c.variant for c in comparisons if c.better]
    if better:
        return max(better, key=lambda name: (arms[name].rate or 0.0, name))
    if all(c.worse for c in comparisons):
        return control
    return None


def describe(result: AbnResult, arms: Mapping[str, Arm], settings: SplitTest) -> str:
    """One line for events and status: each variant's rate and effect against the control, and the decision."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    parts = [f"control {result.control} {pct(arms[result.control].rate)}"]
    name = "p" if settings.test == "twoProportion" else "e"
    for c in result.comparisons:
        effect = "" if c.effect is None else f" ({100 * c.effect:+.2f} points"
        if c.statistic is not None and c.threshold is not None:
            relation = "<" if name == "p" else ">="
            effect += f", {name} {c.statistic:.3g} vs {relation} {c.threshold:.3g}"
        effect += ")" if c.effect is not None else ""
        verdict = " better" if c.better else " worse" if c.worse else ""
        parts.append(f"{c.variant} {pct(arms[c.variant].rate)}{effect}{verdict}")
    method = "Holm" if settings.test == "twoProportion" else "Bonferroni on e-values"
    parts.append(f"winner {result.winner or 'undecided'} ({method}, family-wise alpha {settings.alpha:g})")
    return ", ".join(parts)
