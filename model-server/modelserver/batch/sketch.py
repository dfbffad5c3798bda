"""A DDSketch of the scores (Masson, Rim, Lee, VLDB 2019): quantiles with a bounded *relative* error in bounded
memory, mergeable across shards and runs. A value v > 0 falls in bucket ceil(log_gamma(v)), gamma = (1+a)/(1-a);
each bucket's estimate 2·gamma^k/(gamma+1) is within a relative `a` of every value in it, so a quantile is too.
The buckets are fixed by `a` alone, so two sketches are also two histograms over the same bins (what the
operator's population stability index compares)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelrollout_contract.batch import MAX_HISTOGRAM_BINS, Histogram, Sketch

RELATIVE_ACCURACY = 0.01
ZERO = 1e-12  # |v| below this counts as zero (the log of it is not worth a bucket)
REPORTED = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}


class DDSketch:
    def __init__(self, relative_accuracy: float = RELATIVE_ACCURACY) -> None:
        self.accuracy = relative_accuracy
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.count = 0
        self.zeros = 0
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}
        self.minimum: float | None = None
        self.maximum: float | None = None

    def add(self, values: np.ndarray[Any, np.dtype[Any]]) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if not len(values):
            return
        self.count += len(values)
        low, high = float(values.min()), float(values.max())
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)
        self.zeros += int(np.count_nonzero(np.abs(values) < ZERO))
        for sign, store in ((1.0, self.positive), (-1.0, self.negative)):
            chosen = values[sign * values >= ZERO] * sign
            if len(chosen):
                keys, counts = np.unique(np.ceil(np.log(chosen) / self._log_gamma).astype(np.int64), return_counts=True)
                for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
                    store[key] = store.get(key, 0) + n

    def _value(self, key: int) -> float:
        return 2 * self.gamma**key / (self.gamma + 1)

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for key in sorted(self.negative, reverse=True):  # most negative first
            seen += self.negative[key]
            if seen > rank:
                return -self._value(key)
        seen += self.zeros
        if seen > rank:
            return 0.0
        for key in sorted(self.positive):
            seen += self.positive[key]
            if seen > rank:
                return self._value(key)
        return self.maximum

    def rank(self, value: float) -> float:
        """The share of values <= `value` (0.0 for an empty sketch), counting a bucket whole when its estimate
        (what `quantile` reports for it) is <= `value`. Exact for a `value` that is a bucket's estimate, such as a
        quantile of this or another sketch of the same accuracy; otherwise the values of the one bucket holding
        `value` (all within a relative `accuracy` of it) may be counted on the wrong side."""
        if self.count == 0:
            return 0.0
        seen = sum(n for key, n in self.negative.items() if -self._value(key) <= value)
        if value >= 0:
            seen += self.zeros
        seen += sum(n for key, n in self.positive.items() if self._value(key) <= value)
        return seen / self.count

    def merge(self, other: DDSketch) -> None:
        """Add another sketch of the same accuracy (another shard's, another batch's): the same buckets."""
        if other.accuracy != self.accuracy:
            raise ValueError(f"cannot merge sketches of accuracy {other.accuracy} and {self.accuracy}")
        self.count += other.count
        self.zeros += other.zeros
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        bounds = [b for b in (self.minimum, other.minimum) if b is not None]
        self.minimum = min(bounds) if bounds else None
        bounds = [b for b in (self.maximum, other.maximum) if b is not None]
        self.maximum = max(bounds) if bounds else None

    def histogram(self, max_bins: int = MAX_HISTOGRAM_BINS) -> Histogram:
        """The buckets merged by the least power of two that leaves at most `max_bins` non-empty bins."""
        factor = 1
        while True:
            positive = _merged(self.positive, factor)
            negative = _merged(self.negative, factor)
            if len(positive) + len(negative) + (self.zeros > 0) <= max_bins:
                return Histogram(factor=factor, zeros=self.zeros, positive=positive, negative=negative)
            factor *= 2

    @classmethod
    def from_wire(cls, wire: Sketch) -> DDSketch:
        sketch = cls(wire.relative_accuracy)
        sketch.count, sketch.zeros = wire.count, wire.zeros
        sketch.positive, sketch.negative = dict(wire.positive), dict(wire.negative)
        sketch.minimum, sketch.maximum = wire.minimum, wire.maximum
        return sketch

    def to_wire(self) -> Sketch:
        quantiles = {name: self.quantile(q) for name, q in REPORTED.items()}
        return Sketch(
            relative_accuracy=self.accuracy,
            count=self.count,
            zeros=self.zeros,
            positive=dict(self.positive),
            negative=dict(self.negative),
            minimum=self.minimum,
            maximum=self.maximum,
            quantiles={k: v for k, v in quantiles.items() if v is not None},
        )


def _merged(buckets: dict[int, int], factor: int) -> dict[int, int]:
    merged: dict[int, int] = {}
    for key, n in buckets.items():
        merged[key // factor] = merged.get(key // factor, 0) + n
    return merged
