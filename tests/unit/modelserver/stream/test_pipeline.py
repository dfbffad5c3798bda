"""One micro-batch through a real model: outputs in record order with the model's own answers, poison records
and a failing model's batch dead-lettered (never lost), the key share skipped but committed, the offsets to
commit per partition."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Message

from modelrollout_contract.metrics import DEAD_LETTERED, DROPPED, SCORED, SKIPPED
from modelrollout_contract.sticky import BUCKETS, message_bucket
from modelserver.runtimes import LoadOptions, load_model
from modelserver.runtimes.base import Array, Model, Prediction, Signature
from modelserver.stream.outgoing import FRAMING_BYTES, Envelopes
from modelserver.stream.pipeline import Pipeline
from modelserver.stream.records import Decoder
from modelserver.stream.scoring import Scorer
from tests.unit.modelserver import builders

TS_TYPE_CREATE = 1


def message(partition: int, offset: int, value: bytes | None, key: bytes | None = None, ts_ms: int = 0) -> Message:
    stamp = (TS_TYPE_CREATE, ts_ms) if ts_ms else (0, -1)
    return Message(topic="in", partition=partition, offset=offset, key=key, value=value, timestamp=stamp)


def pipeline_of(
    model: Model,
    *,
    dlq: str | None = "dlq",
    share: tuple[int, int] | None = None,
    threshold: float | None = None,
    passthrough: tuple[str, ...] = (),
    limit: int = 1_000_000,
) -> Pipeline:
    scorer = Scorer(model, name="churn", version="2", threshold=threshold)
    envelopes = Envelopes(output_topic="out", dead_letter_topic=dlq, model="churn", version="2")
    decoder = Decoder(model.signature.feature_names, model.signature.dtype, passthrough)
    return Pipeline(scorer, envelopes, decoder, share=share, max_message_bytes=limit)


@pytest.fixture(scope="module")
def binary(logistic: builders.Built) -> Model:
    return load_model(logistic.path, "sklearn", LoadOptions())


def headers(out: Any) -> dict[str, bytes]:
    return dict(out.headers)


def test_a_batch_scores_its_valid_records_with_the_models_answers_and_dead_letters_the_rest(
    binary: Model, logistic: builders.Built
) -> None:
    names = binary.signature.feature_names
    rows = logistic.x[:6]
    batch = [
        message(0, 10, json.dumps(rows[0].tolist()).encode(), b"k0", ts_ms=1_000),
        message(1, 5, json.dumps(dict(zip(names, rows[1].tolist(), strict=True)) | {"id": 7}).encode(), b"k1"),
        message(0, 11, b"{broken", b"k2", ts_ms=2_000),
        message(1, 6, json.dumps(rows[3].tolist()[:-1]).encode()),
        message(0, 12, json.dumps(rows[4].tolist()).encode(), b"k4", ts_ms=3_000),
    ]
    done = pipeline_of(binary, threshold=0.5, passthrough=("id",))(batch)
    assert done.counts == {SCORED: 3, DEAD_LETTERED: 2, SKIPPED: 0}
    assert done.size == 5
    assert done.next_offsets == {("in", 0): 13, ("in", 1): 7}
    assert done.first_offsets == {("in", 0): 10, ("in", 1): 5}
    assert done.timestamps == [1.0, 2.0, 3.0]

    outputs, letters = done.outgoing[:3], done.outgoing[3:]
    assert [o.topic for o in outputs] == ["out"] * 3
    assert [o.key for o in outputs] == [b"k0", b"k1", b"k4"]
    assert [headers(o)["source-offset"] for o in outputs] == [b"10", b"5", b"12"]
    expected = logistic.estimator.predict_proba(rows[[0, 1, 4]])
    for out, proba in zip(outputs, expected, strict=True):
        value = json.loads(out.value)
        assert value["prediction"] == int(np.argmax(proba))
        assert value["probabilities"] == pytest.approx({"0": proba[0], "1": proba[1]})
        assert value["decision"] == bool(proba[1] >= 0.5)
        assert (value["model"], value["version"]) == ("churn", "2")
    assert [json.loads(o.value)["id"] for o in outputs] == [None, 7, None]

    assert [(o.topic, o.key, o.value) for o in letters] == [("dlq", b"k2", b"{broken"), ("dlq", None, batch[3].value())]
    assert [headers(o)["reason"] for o in letters] == [b"not_json", b"wrong_length"]
    assert [(headers(o)["source-partition"], headers(o)["source-offset"]) for o in letters] == [(b"0", b"11"),
                                                                                              (b"1", b"6")]  # fmt: skip


class Failing:
    """A model whose every call raises (a runtime bug, a model server's dependency missing...)."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature

    def predict(self, x: Array) -> Prediction:
        raise RuntimeError(f"boom on {len(x)} rows")


class Miscounting(Failing):
    def predict(self, x: Array) -> Prediction:
        return Prediction(np.zeros(len(x) - 1))


@pytest.mark.parametrize(("broken", "said"), [(Failing, "RuntimeError: boom on 2 rows"), (Miscounting, "1 rows for 2")])
def test_a_model_failing_on_a_batch_dead_letters_all_of_it_and_goes_on(
    binary: Model, broken: type[Failing], said: str
) -> None:
    batch = [message(0, i, b"[" + b",".join([b"1"] * 20) + b"]", f"u{i}".encode()) for i in range(2)]
    batch.append(message(0, 2, b"[1]"))
    done = pipeline_of(broken(binary.signature))(batch)
    assert done.counts == {DEAD_LETTERED: 3, SKIPPED: 0}
    assert [o.topic for o in done.outgoing] == ["dlq"] * 3
    assert [headers(o)["reason"] for o in done.outgoing] == [b"wrong_length", b"model_error", b"model_error"]
    assert said in headers(done.outgoing[1])["error"].decode()
    assert [o.value for o in done.outgoing] == [batch[2].value(), batch[0].value(), batch[1].value()]
    assert done.next_offsets == {("in", 0): 3}


def test_records_out_of_the_share_are_skipped_but_their_offsets_committed(binary: Model) -> None:
    row = b"[" + b",".join([b"0.5"] * 20) + b"]"
    batch = [message(p, o, row, f"user-{o}".encode() if o % 3 else None) for p in range(2) for o in range(300)]
    done = pipeline_of(binary, share=(0, 3000))(batch)
    mine = [m for m in batch if message_bucket(m.key(), m.partition() or 0, m.offset() or 0) < 3000]
    assert 0 < len(mine) < len(batch)
    assert done.counts == {SCORED: len(mine), SKIPPED: len(batch) - len(mine)}
    assert [(o.key, headers(o)["source-partition"], headers(o)["source-offset"]) for o in done.outgoing] == [
        (m.key(), str(m.partition()).encode(), str(m.offset()).encode()) for m in mine
    ]
    assert done.next_offsets == {("in", 0): 300, ("in", 1): 300}
    # the complementary share scores exactly the others
    other = pipeline_of(binary, share=(3000, BUCKETS))(batch)
    assert other.counts[SCORED] == len(batch) - len(mine)


def test_a_batch_wholly_out_of_the_share_produces_nothing_and_commits_its_offsets(binary: Model) -> None:
    done = pipeline_of(binary, share=(0, 0))([message(0, 41, b"junk"), message(0, 42, b"junk", b"k")])
    assert done.outgoing == []
    assert done.counts == {SKIPPED: 2}
    assert done.next_offsets == {("in", 0): 43}


def test_without_a_dead_letter_topic_invalid_records_are_dropped_and_counted(binary: Model) -> None:
    done = pipeline_of(binary, dlq=None)([message(0, 0, b"junk"), message(0, 1, b"[" + b",".join([b"1"] * 20) + b"]")])
    assert done.counts == {SCORED: 1, DROPPED: 1, SKIPPED: 0}
    assert [o.topic for o in done.outgoing] == ["out"]


def test_a_regressor_and_a_multiclass_classifier_answer_in_their_shapes(
    regressor: builders.Built, iris: builders.Built
) -> None:
    model = load_model(regressor.path, "sklearn", LoadOptions())
    done = pipeline_of(model)([message(0, 0, json.dumps(regressor.x[0].tolist()).encode())])
    value = json.loads(done.outgoing[0].value or b"")
    assert value["prediction"] == pytest.approx(float(regressor.estimator.predict(regressor.x[:1])[0]))
    assert "probabilities" not in value
    model = load_model(iris.path, "sklearn", LoadOptions())
    done = pipeline_of(model)([message(0, 0, json.dumps(iris.x[0].tolist()).encode())])
    value = json.loads(done.outgoing[0].value or b"")
    assert value["prediction"] == iris.estimator.predict(iris.x[:1])[0]
    assert set(value["probabilities"]) == {"setosa", "versicolor", "virginica"}
    with pytest.raises(ValueError, match="binary classifiers only"):
        Scorer(model, name="iris", version="1", threshold=0.5)


def test_a_record_whose_output_is_too_large_is_dead_lettered_not_left_to_fail_its_batch(binary: Model) -> None:
    """A passthrough field can make an output larger than a message may be: producing it would fail the batch's
    transaction on every read. Such a record is dead-lettered (too_large) with its value, or without its value
    when the dead letter would be too large as well (the record stays at its source)."""
    names = binary.signature.feature_names
    row = dict(zip(names, [0.5] * len(names), strict=True))
    small = json.dumps(row | {"note": "ok"}).encode()
    big = json.dumps(row | {"note": "x" * 3_000}).encode()
    batch = [message(0, 1, small, b"a"), message(0, 2, big, b"b")]
    done = pipeline_of(binary, passthrough=("note",), limit=2_000)(batch)
    assert done.counts == {SCORED: 1, DEAD_LETTERED: 1, SKIPPED: 0}
    [output, letter] = done.outgoing
    assert (output.topic, output.key) == ("out", b"a")
    assert (letter.topic, letter.key, letter.value) == ("dlq", b"b", None), "a dead letter of 3 kB is too large too"
    assert headers(letter)["reason"] == b"too_large"
    assert b"over max_message_bytes (2000)" in headers(letter)["error"]
    assert b"left at its source" in headers(letter)["error"]
    assert all(o.size + FRAMING_BYTES <= 2_000 for o in done.outgoing)
