"""A stream shadow's comparison, the arithmetic and the pairing (pure; modelserver.stream.comparing does the I/O).

A shadowing candidate scores the records of its share into the shadow topic; its stable counterpart goes on
writing the output topic. Each of the shadow's answers is paired with the stable output for the same input
(topic, partition, offset: both carry it in their `source-*` headers) and compared once:

- error: the shadow could not score a record the stable revision scored (its dead letter), or either answer is
  not an output we can read: a candidate that fails cannot be said to agree;
- agree / disagree: the `prediction` fields are equal (numbers within 1e-6 relative, as the router's shadow
  compares) or not;
- |stable - shadow|: of the record's score, a regressor's prediction or a binary classifier's probability of its
  second class (the batch shadow's score); none for other classifiers.

Records the stable revision dead-lettered never reach the output topic and are not compared. Which side of a
pair comes first depends on which consumer is ahead, so each side waits in a bounded map (PENDING_LIMIT, oldest
out first); an answer that leaves it unpaired is counted as unmatched (the other consumer far behind, or a record
it never scored).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from modelrollout_contract.metrics import AGREE, DISAGREE, ERROR, SHADOW_SIDE, STABLE_SIDE
from modelserver.routing.shadow import equal_values
from modelserver.stream.outgoing import Origin

PENDING_LIMIT = 100_000  # per side: ~20 MB of small answers, minutes of a busy topic's skew between consumers
Side = Literal["shadow", "stable"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One side's answer to a record: its prediction and score, or failed (a dead letter, an unreadable output)."""

    prediction: Any = None
    score: float | None = None
    failed: bool = False


FAILED = Answer(failed=True)


def _score(document: dict[str, Any]) -> float | None:
    probabilities = document.get("probabilities")
    if isinstance(probabilities, dict):
        values = list(probabilities.values())
        second = values[1] if len(values) == 2 else None
        return float(second) if isinstance(second, int | float) and not isinstance(second, bool) else None
    prediction = document.get("prediction")
    if isinstance(prediction, float):
        return prediction
    return None


def answer_of(value: bytes | None) -> Answer:
    """An output message's value (modelserver.stream.scoring's JSON object) as an Answer; FAILED if unreadable."""
    if value is None:
        return FAILED
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return FAILED
    if not isinstance(document, dict) or "prediction" not in document:
        return FAILED
    return Answer(document["prediction"], _score(document))


@dataclass(frozen=True, slots=True)
class Comparison:
    result: str
    abs_diff: float | None = None


def compare(stable: Answer, shadow: Answer) -> Comparison:
    if stable.failed or shadow.failed:
        return Comparison(ERROR)
    result = AGREE if equal_values(stable.prediction, shadow.prediction) else DISAGREE
    diff = None
    if stable.score is not None and shadow.score is not None and math.isfinite(stable.score - shadow.score):
        diff = abs(stable.score - shadow.score)
    return Comparison(result, diff)


@dataclass
class Paired:
    """What one answer did: completed a pair (its comparison), and how many older answers of its side it pushed
    out of the wait unpaired."""

    comparison: Comparison | None = None
    evicted: int = 0
    side: Side = "shadow"


@dataclass
class ShadowJoin:
    """Pairs the two sides' answers by source; each pair is compared once, when its second answer arrives."""

    limit: int = PENDING_LIMIT
    _waiting: dict[Side, OrderedDict[Origin, Answer]] = field(
        default_factory=lambda: {SHADOW_SIDE: OrderedDict(), STABLE_SIDE: OrderedDict()}
    )

    def add(self, side: Side, source: Origin, answer: Answer) -> Paired:
        other = self._waiting[STABLE_SIDE if side == SHADOW_SIDE else SHADOW_SIDE]
        found = other.pop(source, None)
        if found is not None:
            stable, shadow = (answer, found) if side == STABLE_SIDE else (found, answer)
            return Paired(compare(stable, shadow), side=side)
        mine = self._waiting[side]
        mine[source] = answer
        mine.move_to_end(source)
        evicted = 0
        while len(mine) > self.limit:
            mine.popitem(last=False)
            evicted += 1
        return Paired(evicted=evicted, side=side)

    def waiting(self, side: Side) -> int:
        return len(self._waiting[side])
