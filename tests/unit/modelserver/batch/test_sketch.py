"""The histogram a run reports: the sketch's fixed buckets, merged just enough to fit a termination message."""

from __future__ import annotations

import numpy as np

from modelrollout_contract.batch import MAX_HISTOGRAM_BINS
from modelserver.batch.sketch import DDSketch


def test_a_narrow_distribution_keeps_the_sketchs_own_buckets() -> None:
    sketch = DDSketch()
    sketch.add(np.linspace(0.5, 0.6, 1000))
    histogram = sketch.histogram()
    assert histogram.factor == 1
    assert histogram.positive == sketch.positive
    assert sum(histogram.positive.values()) == 1000


def test_a_wide_distribution_is_merged_by_a_power_of_two_within_the_bin_limit() -> None:
    sketch = DDSketch()
    values = np.concatenate([np.geomspace(1e-9, 1.0, 5000), -np.geomspace(1e-3, 1e3, 500), np.zeros(7)])
    sketch.add(values)
    histogram = sketch.histogram()
    assert histogram.factor > 1
    assert histogram.factor & (histogram.factor - 1) == 0, "a power of two"
    assert len(histogram.positive) + len(histogram.negative) + 1 <= MAX_HISTOGRAM_BINS
    assert sum(histogram.positive.values()) + sum(histogram.negative.values()) + histogram.zeros == len(values)
    assert histogram.zeros == 7
    # Each bin is the sketch's buckets k with k // factor == bin.
    expected: dict[int, int] = {}
    for key, n in sketch.positive.items():
        expected[key // histogram.factor] = expected.get(key // histogram.factor, 0) + n
    assert histogram.positive == expected
