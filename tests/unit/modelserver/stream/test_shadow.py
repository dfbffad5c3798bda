"""A stream shadow's comparison (modelserver.stream.shadow, pure): an output read as an answer, two answers
compared, the pairing of both sides by source; and its I/O's Kafka-free part (modelserver.stream.comparing): the
source an output names, which stable outputs are wanted, and the comparisons counted in the shadow's metrics."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from modelrollout_contract.sticky import keyless_bucket, message_bucket
from modelserver.stream import shadow
from modelserver.stream.comparing import Comparer
from modelserver.stream.metrics import StreamMetrics
from modelserver.stream.outgoing import Envelopes, origin_of
from modelserver.stream.shadow import FAILED, Answer, Comparison, ShadowJoin, Side, answer_of, compare

SOURCE = ("events", 3, 1234)
LABELS = {"model": "m", "version": "1", "revision": "r2"}
COMPARISONS = "modelserver_stream_shadow_comparisons_total"
UNMATCHED = "modelserver_stream_shadow_unmatched_total"
ABS_DIFF = "modelserver_stream_shadow_abs_diff"


def value(**document: Any) -> bytes:
    return orjson.dumps(document)


def classifier(prediction: Any, positive: float) -> bytes:
    return value(prediction=prediction, probabilities={"0": round(1 - positive, 6), "1": positive}, model="m",
                 version="1")  # fmt: skip


# --- an output as an answer -----------------------------------------------------------------------------------


def test_a_binary_classifiers_score_is_the_probability_of_its_second_class() -> None:
    answer = answer_of(value(prediction=1, probabilities={"0": 0.2, "1": 0.8}, model="m", version="1"))
    assert answer == Answer(prediction=1, score=0.8, failed=False)
    labelled = answer_of(value(prediction="fraud", probabilities={"legit": 0.3, "fraud": 0.7}))
    assert (labelled.prediction, labelled.score) == ("fraud", 0.7)


def test_a_regressors_score_is_its_prediction() -> None:
    assert answer_of(value(prediction=2.5, model="m", version="1")) == Answer(prediction=2.5, score=2.5)


@pytest.mark.parametrize(
    "document",
    [
        {"prediction": 2, "probabilities": {"0": 0.1, "1": 0.2, "2": 0.7}},  # three classes: no one score
        {"prediction": 3},  # an integer is a label, not a score: only a float prediction is one
        {"prediction": "yes", "probabilities": {"no": False, "yes": True}},  # booleans are no probabilities
    ],
    ids=["three-classes", "integer-prediction", "boolean-probabilities"],
)
def test_no_score_without_a_float_or_two_probabilities(document: dict[str, Any]) -> None:
    answer = answer_of(orjson.dumps(document))
    assert answer.score is None
    assert answer.prediction == document["prediction"]
    assert not answer.failed


@pytest.mark.parametrize(
    "raw",
    [None, b"\x00not json", b"[1, 2]", b'"text"', b'{"probabilities": {"0": 0.2, "1": 0.8}}'],
    ids=["no-value", "not-json", "a-list", "a-string", "no-prediction"],
)
def test_an_unreadable_output_is_a_failed_answer(raw: bytes | None) -> None:
    assert answer_of(raw) is FAILED
    assert FAILED.failed


# --- two answers compared -------------------------------------------------------------------------------------


def test_predictions_agree_within_a_millionth_relative() -> None:
    assert compare(Answer(0.5, 0.5), Answer(0.5 * (1 + 5e-7), 0.5 * (1 + 5e-7))).result == "agree"
    assert compare(Answer(0.5, 0.5), Answer(0.5 * (1 + 1e-5), 0.5 * (1 + 1e-5))).result == "disagree"
    assert compare(Answer(1), Answer(1)) == Comparison("agree", None)
    assert compare(Answer(1), Answer(0)) == Comparison("disagree", None)
    assert compare(Answer("1"), Answer(1)).result == "disagree", "a label and a number are not the same answer"


def test_the_abs_diff_is_of_the_scores_whatever_the_labels_say() -> None:
    agreeing = compare(Answer(1, 0.8), Answer(1, 0.6))
    assert agreeing.result == "agree"
    assert agreeing.abs_diff == pytest.approx(0.2)
    disagreeing = compare(Answer(1, 0.8), Answer(0, 0.3))
    assert disagreeing.result == "disagree"
    assert disagreeing.abs_diff == pytest.approx(0.5)
    assert compare(Answer(0, 0.3), Answer(1, 0.8)).abs_diff == pytest.approx(0.5), "never negative"


@pytest.mark.parametrize(
    ("stable", "shadowing"),
    [
        (Answer(1, 0.8), Answer(1, None)),
        (Answer(1, None), Answer(1, 0.8)),
        (Answer(1.0, math.inf), Answer(1.0, 1.0)),
        (Answer(1.0, math.inf), Answer(1.0, math.inf)),
        (Answer(1.0, math.nan), Answer(1.0, 1.0)),
    ],
    ids=["shadow-without-score", "stable-without-score", "infinite", "both-infinite", "nan"],
)
def test_no_abs_diff_without_two_finite_scores(stable: Answer, shadowing: Answer) -> None:
    assert compare(stable, shadowing).abs_diff is None


def test_a_failed_answer_on_either_side_is_an_error_without_a_diff() -> None:
    assert compare(Answer(1, 0.8), FAILED) == Comparison("error", None)
    assert compare(FAILED, Answer(1, 0.8)) == Comparison("error", None)
    assert compare(FAILED, FAILED) == Comparison("error", None)


# --- pairing the two sides ------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["stable", "shadow"])
def test_a_pair_completes_whichever_side_comes_first(first: Side, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Answer, Answer]] = []

    def recording(stable: Answer, shadowing: Answer) -> Comparison:
        seen.append((stable, shadowing))
        return compare(stable, shadowing)

    monkeypatch.setattr(shadow, "compare", recording)
    stable_answer, shadow_answer = Answer(1, 0.8), Answer(0, 0.5)
    answers = {"stable": stable_answer, "shadow": shadow_answer}
    second: Side = "shadow" if first == "stable" else "stable"
    join = ShadowJoin()
    waited = join.add(first, SOURCE, answers[first])
    assert (waited.comparison, waited.evicted, waited.side) == (None, 0, first)
    assert (join.waiting(first), join.waiting(second)) == (1, 0)
    paired = join.add(second, SOURCE, answers[second])
    assert paired.comparison is not None
    assert paired.comparison.result == "disagree"
    assert paired.comparison.abs_diff == pytest.approx(0.3)
    assert paired.side == second
    assert seen == [(stable_answer, shadow_answer)], "stable is compared as stable, whichever came first"
    assert (join.waiting("stable"), join.waiting("shadow")) == (0, 0)


@pytest.mark.parametrize("first", ["stable", "shadow"])
def test_a_failed_shadow_is_an_error_whichever_side_comes_first(first: str) -> None:
    join = ShadowJoin()
    if first == "stable":
        join.add("stable", SOURCE, Answer(1, 0.8))
        paired = join.add("shadow", SOURCE, FAILED)
    else:
        join.add("shadow", SOURCE, FAILED)
        paired = join.add("stable", SOURCE, Answer(1, 0.8))
    assert paired.comparison == Comparison("error", None)


def test_answers_of_other_sources_do_not_pair() -> None:
    join = ShadowJoin()
    join.add("shadow", ("events", 3, 1234), Answer(1))
    for other in [("events", 3, 1235), ("events", 4, 1234), ("other", 3, 1234)]:
        assert join.add("stable", other, Answer(1)).comparison is None
    assert (join.waiting("shadow"), join.waiting("stable")) == (1, 3)


def test_a_later_answer_for_a_waiting_source_replaces_it() -> None:
    join = ShadowJoin()
    join.add("shadow", SOURCE, Answer(0, 0.1))
    join.add("shadow", SOURCE, Answer(1, 0.8))
    assert join.waiting("shadow") == 1
    paired = join.add("stable", SOURCE, Answer(1, 0.8))
    assert paired.comparison == Comparison("agree", 0.0)


def test_the_limit_evicts_the_oldest_of_that_side_and_says_how_many() -> None:
    join = ShadowJoin(limit=2)
    assert join.add("stable", ("events", 0, 9), Answer(1)).evicted == 0
    assert join.add("shadow", ("events", 0, 1), Answer(1)).evicted == 0
    assert join.add("shadow", ("events", 0, 2), Answer(1)).evicted == 0
    pushed = join.add("shadow", ("events", 0, 3), Answer(1))
    assert (pushed.comparison, pushed.evicted, pushed.side) == (None, 1, "shadow")
    assert (join.waiting("shadow"), join.waiting("stable")) == (2, 1), "the other side keeps its own"
    assert join.add("stable", ("events", 0, 1), Answer(1)).comparison is None, "offset 1 was pushed out"
    assert join.add("stable", ("events", 0, 2), Answer(1)).comparison is not None
    join.limit = 1
    assert join.add("stable", ("events", 0, 4), Answer(1)).evicted == 2
    assert join.waiting("stable") == 1


def test_a_replaced_answer_is_the_newest_of_its_side() -> None:
    join = ShadowJoin(limit=2)
    join.add("shadow", ("events", 0, 1), Answer(1))
    join.add("shadow", ("events", 0, 2), Answer(1))
    join.add("shadow", ("events", 0, 1), Answer(0))  # again: now the newest
    assert join.add("shadow", ("events", 0, 3), Answer(1)).evicted == 1
    assert join.add("stable", ("events", 0, 2), Answer(1)).comparison is None, "offset 2 was the oldest"
    assert join.add("stable", ("events", 0, 1), Answer(0)).comparison == Comparison("agree", None)


def test_a_pair_is_compared_once() -> None:
    join = ShadowJoin()
    join.add("shadow", SOURCE, Answer(1))
    assert join.add("stable", SOURCE, Answer(1)).comparison is not None
    again = join.add("stable", SOURCE, Answer(1))
    assert again.comparison is None
    assert (join.waiting("stable"), join.waiting("shadow")) == (1, 0)


# --- the shadow's metrics -------------------------------------------------------------------------------------


def test_a_shadows_comparison_series_start_at_zero() -> None:
    metrics = StreamMetrics(model="m", version="1", revision="r2", shadow=True)
    for result in ("agree", "disagree", "error"):
        assert metrics.registry.get_sample_value(COMPARISONS, {**LABELS, "result": result}) == 0
    for side in ("shadow", "stable"):
        assert metrics.registry.get_sample_value(UNMATCHED, {**LABELS, "side": side}) == 0
    assert metrics.registry.get_sample_value(f"{ABS_DIFF}_count", LABELS) == 0


def test_a_consumer_that_does_not_shadow_has_no_comparison_series() -> None:
    metrics = StreamMetrics(model="m", version="1", revision="r2")
    families = {family.name for family in metrics.registry.collect()}
    assert not any(name.startswith("modelserver_stream_shadow") for name in families)
    assert metrics.registry.get_sample_value(COMPARISONS, {**LABELS, "result": "agree"}) is None
    assert "modelserver_stream_records" in families, "its other series are there"


# --- comparing: the source an output names --------------------------------------------------------------------


def test_the_source_is_read_from_the_headers() -> None:
    headers = [("model", b"m"), ("source-topic", b"events"), ("source-partition", b"3"), ("source-offset", b"1234")]
    assert origin_of(headers) == ("events", 3, 1234)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("source-topic", b"events"), ("source-partition", b"3")],
        [("source-topic", b"events"), ("source-partition", b"three"), ("source-offset", b"1234")],
        [("source-topic", b"events"), ("source-partition", b"3"), ("source-offset", None)],
        [("source-topic", None), ("source-partition", b"3"), ("source-offset", b"1234")],
        [("source-topic", b"\xff\xfe"), ("source-partition", b"3"), ("source-offset", b"1234")],
    ],
    ids=["none", "empty", "no-offset", "partition-not-a-number", "null-offset", "null-topic", "topic-not-utf8"],
)
def test_a_missing_or_malformed_source_is_none(headers: list[tuple[str, Any]] | None) -> None:
    assert origin_of(headers) is None


# --- comparing without Kafka ----------------------------------------------------------------------------------

ENVELOPES = Envelopes(output_topic="scores-shadow", dead_letter_topic="scores-shadow", model="m", version="1")


def comparer(join: ShadowJoin | None = None, share: tuple[int, int] | None = (0, 5000)) -> Comparer:
    """Constructed only: start() would connect."""
    metrics = StreamMetrics(model="m", version="1", revision="r2", shadow=True)
    return Comparer(config={}, topic="scores", input_topic="events", share=share, metrics=metrics, join=join)


def record(offset: int, *, key: bytes | None = b"user-3", partition: int = 3) -> Message:
    return Message(topic="events", partition=partition, offset=offset, key=key, value=b'{"amount": 12}')


def sample(c: Comparer, name: str, **labels: str) -> float | None:
    return c.metrics.registry.get_sample_value(name, {**LABELS, **labels})


def test_a_shadow_answer_and_its_stable_output_are_compared_and_counted() -> None:
    c = comparer()
    c.shadowed([ENVELOPES.output(record(10), classifier(1, 0.5)), ENVELOPES.output(record(11), classifier(1, 0.9))])
    assert c.join.waiting("shadow") == 2
    assert sample(c, COMPARISONS, result="disagree") == 0
    c._add("stable", ("events", 3, 10), answer_of(classifier(0, 0.8)))
    c._add("stable", ("events", 3, 11), answer_of(classifier(1, 0.9)))
    assert sample(c, COMPARISONS, result="disagree") == 1
    assert sample(c, COMPARISONS, result="agree") == 1
    assert sample(c, COMPARISONS, result="error") == 0
    assert sample(c, f"{ABS_DIFF}_count") == 2
    assert sample(c, f"{ABS_DIFF}_sum") == pytest.approx(0.3)
    assert (c.join.waiting("shadow"), c.join.waiting("stable")) == (0, 0)


def test_a_shadows_dead_letter_is_an_error() -> None:
    c = comparer()
    letter = ENVELOPES.dead_letter(record(12), "model_error", "boom")
    assert letter is not None
    c._add("stable", ("events", 3, 12), answer_of(classifier(1, 0.9)))
    c.shadowed([letter])
    assert sample(c, COMPARISONS, result="error") == 1
    assert sample(c, COMPARISONS, result="agree") == 0
    assert sample(c, f"{ABS_DIFF}_count") == 0, "an error has no diff"


def test_a_shadow_output_that_reads_as_a_prediction_is_no_error_even_in_the_shadow_topic() -> None:
    """Outputs and dead letters share the shadow topic: the reason header, not the topic, marks a dead letter."""
    c = comparer()
    c._add("stable", ("events", 3, 13), answer_of(value(prediction=2.5)))
    c.shadowed([ENVELOPES.output(record(13), value(prediction=2.0))])
    assert sample(c, COMPARISONS, result="disagree") == 1
    assert sample(c, f"{ABS_DIFF}_sum") == pytest.approx(0.5)


def test_a_message_without_a_source_is_not_an_answer() -> None:
    c = comparer()
    out = ENVELOPES.output(record(14), classifier(1, 0.9))
    bare = type(out)(out.topic, out.key, out.value, [h for h in out.headers if not h[0].startswith("source-")])
    c.shadowed([bare])
    assert c.join.waiting("shadow") == 0


def test_answers_pushed_out_unpaired_are_counted_by_side() -> None:
    c = comparer(join=ShadowJoin(limit=1))
    c.shadowed([ENVELOPES.output(record(20), classifier(1, 0.9)), ENVELOPES.output(record(21), classifier(1, 0.9))])
    assert sample(c, UNMATCHED, side="shadow") == 1
    assert sample(c, UNMATCHED, side="stable") == 0
    c._add("stable", ("events", 3, 30), answer_of(classifier(1, 0.9)))
    c._add("stable", ("events", 3, 31), answer_of(classifier(1, 0.9)))
    c._add("stable", ("events", 3, 32), answer_of(classifier(1, 0.9)))
    assert sample(c, UNMATCHED, side="stable") == 2
    assert sample(c, UNMATCHED, side="shadow") == 1
    c._add("stable", ("events", 3, 21), answer_of(classifier(1, 0.9)))
    assert sample(c, COMPARISONS, result="agree") == 1, "the newest shadow answer still waited"


def stable_output(key: bytes | None, *, partition: int = 0, offset: int = 99) -> Message:
    """A message of the stable output topic (its own partition and offset, not the source's)."""
    return Message(topic="scores", partition=partition, offset=offset, key=key, value=classifier(1, 0.9))


def key_in(low: int, high: int) -> bytes:
    """A key whose bucket is in [low, high)."""
    return next(k for k in (f"user-{i}".encode() for i in range(1_000_000)) if low <= message_bucket(k, 0, 0) < high)


def test_only_outputs_of_the_input_topic_in_the_shadows_share_are_wanted() -> None:
    c = comparer(share=(0, 5000))
    inside, outside = key_in(0, 5000), key_in(5000, 10_000)
    assert c._wanted(stable_output(inside), ("events", 3, 1234))
    assert not c._wanted(stable_output(outside), ("events", 3, 1234))
    assert c._wanted(stable_output(key_in(4999, 5000)), ("events", 3, 1234)), "the share's last bucket"
    assert not c._wanted(stable_output(key_in(5000, 5001)), ("events", 3, 1234)), "the share's end is not in it"
    assert not c._wanted(stable_output(inside), ("other-events", 3, 1234)), "another input topic's output"
    everything = comparer(share=None)
    assert everything._wanted(stable_output(outside), ("events", 3, 1234))
    assert not everything._wanted(stable_output(outside), ("other-events", 3, 1234))


def test_a_keyless_output_falls_in_the_bucket_of_its_sources_place() -> None:
    c = comparer(share=(0, 5000))
    assert keyless_bucket(3, 1234) < 5000 <= keyless_bucket(0, 99), "the premise: the two places differ"
    assert c._wanted(stable_output(None, partition=0, offset=99), ("events", 3, 1234))
    assert not c._wanted(stable_output(None, partition=3, offset=1234), ("events", 0, 99))
