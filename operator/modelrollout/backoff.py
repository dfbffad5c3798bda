"""Retry delays of ModelDeployments whose child objects the API server refuses (a quota, an admission policy, a
value it will not take): each refusal doubles the wait before the next pass, up to a ceiling; a pass that applies
everything, or a new spec generation (the user's fix), starts over at once. Pure: the reconciler asks and tells."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

Key = tuple[str, str]


@dataclass(frozen=True)
class Refusal:
    generation: int | None
    failures: int
    retry_at: datetime


@dataclass
class Backoff:
    initial_s: float
    max_s: float
    _refused: dict[Key, Refusal] = field(default_factory=dict)

    def delay_s(self, failures: int) -> float:
        """The wait after the `failures`-th refusal in a row (1-based)."""
        return min(self.initial_s * 2.0 ** min(failures - 1, 62), self.max_s)

    def waiting(self, key: Key, generation: int | None, now: datetime) -> bool:
        """Whether a pass of `key` now should be skipped: refused before, at this generation, and not due yet."""
        refusal = self._refused.get(key)
        if refusal is None:
            return False
        if refusal.generation != generation:
            del self._refused[key]  # the spec changed: try the user's new spec at once, from the first delay
            return False
        return now < refusal.retry_at

    def refused(self, key: Key, generation: int | None, now: datetime) -> Refusal:
        """Record a refusal; the next one for the same generation waits twice as long."""
        previous = self._refused.get(key)
        failures = previous.failures + 1 if previous is not None and previous.generation == generation else 1
        refusal = Refusal(generation, failures, now + timedelta(seconds=self.delay_s(failures)))
        self._refused[key] = refusal
        return refusal

    def clear(self, key: Key) -> None:
        """Everything applied, or the ModelDeployment is gone."""
        self._refused.pop(key, None)
