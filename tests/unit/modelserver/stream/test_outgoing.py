"""The messages a consumer produces: an output keeps the input's key and names the model and the record's place;
a dead letter keeps the input's key and value as they came and says why."""

from __future__ import annotations

from confluent_kafka import Message

from modelserver.stream.outgoing import ERROR_LIMIT, FRAMING_BYTES, HEADERS_BOUND, Envelopes, Outgoing

envelopes = Envelopes(output_topic="scores", dead_letter_topic="scores-dlq", model="churn", version="7")
source = Message(topic="events", partition=3, offset=1234, key=b"user-9", value=b"\x00not json")


def test_an_output_keeps_the_key_and_names_the_model_and_the_source() -> None:
    out = envelopes.output(source, b'{"prediction": 1}')
    assert (out.topic, out.key, out.value) == ("scores", b"user-9", b'{"prediction": 1}')
    assert out.headers == [
        ("model", b"churn"),
        ("version", b"7"),
        ("source-topic", b"events"),
        ("source-partition", b"3"),
        ("source-offset", b"1234"),
    ]


def test_a_dead_letter_keeps_the_record_as_it_came_and_says_why() -> None:
    letter = envelopes.dead_letter(source, "not_json", "not JSON: unexpected character")
    assert letter is not None
    assert (letter.topic, letter.key, letter.value) == ("scores-dlq", b"user-9", b"\x00not json")
    assert dict(letter.headers) == {
        "reason": b"not_json",
        "error": b"not JSON: unexpected character",
        "model": b"churn",
        "version": b"7",
        "source-topic": b"events",
        "source-partition": b"3",
        "source-offset": b"1234",
    }


def test_a_keyless_record_stays_keyless_and_a_long_error_is_cut_on_a_character() -> None:
    keyless = Message(topic="events", partition=0, offset=0, key=None, value=None)
    letter = envelopes.dead_letter(keyless, "model_error", "é" * 2000)
    assert letter is not None
    assert letter.key is None
    assert letter.value is None
    error = dict(letter.headers)["error"]
    assert len(error) <= ERROR_LIMIT
    assert error.decode() == "é" * (ERROR_LIMIT // 2)
    assert envelopes.output(keyless, b"{}").key is None


def test_without_a_dead_letter_topic_there_is_no_dead_letter() -> None:
    dropping = Envelopes(output_topic="scores", dead_letter_topic=None, model="churn", version="7")
    assert dropping.dead_letter(source, "not_json", "x") is None


def test_a_message_is_over_a_limit_by_its_exact_size_with_a_batchs_framing() -> None:
    headers = [("model", b"churn"), ("version", b"2"), ("source-offset", b"1234")]
    message = Outgoing("out", b"key", b"v" * 5_000, headers)
    exact = message.size + FRAMING_BYTES
    assert message.size == 3 + 5_000 + sum(len(n) + len(v) for n, v in headers)
    assert not message.over(exact)
    assert message.over(exact - 1)
    assert not message.over(exact + HEADERS_BOUND), "far from the limit: no exact sum needed, and none is over"
