"""The verb annotation contract shared by the CLI (writer) and the operator (reader)."""

from __future__ import annotations

import json

import pytest

from modelrollout.rollout.verbs import (
    VERB_ANNOTATION,
    InvalidVerbAnnotation,
    Verb,
    parse_verb_annotation,
    verb_annotation,
)


def test_annotation_key_is_in_our_api_group() -> None:
    assert VERB_ANNOTATION == "modelrollout.dev/verb"


def test_serialised_as_json_with_name_full_and_id() -> None:
    annotations = verb_annotation(Verb(name="promote", full=True, id="a1b2"))
    assert list(annotations) == [VERB_ANNOTATION]
    assert json.loads(annotations[VERB_ANNOTATION]) == {"name": "promote", "full": True, "id": "a1b2"}


@pytest.mark.parametrize(
    "verb",
    [
        Verb(name="promote", id="x"),
        Verb(name="promote", full=True, id="y"),
        *(Verb(name=n, id=f"id-{n}") for n in ("abort", "retry", "pause", "resume", "undo")),
        Verb(name="undo"),
    ],
    ids=str,
)
def test_round_trip(verb: Verb) -> None:
    assert parse_verb_annotation(verb_annotation(verb)) == verb


def test_other_annotations_are_kept_apart() -> None:
    annotations = {"kubectl.kubernetes.io/last-applied-configuration": "{}", **verb_annotation(Verb(name="pause"))}
    assert parse_verb_annotation(annotations) == Verb(name="pause")


@pytest.mark.parametrize("annotations", [None, {}, {"other": "x"}])
def test_no_annotation_is_no_verb(annotations: dict[str, str] | None) -> None:
    assert parse_verb_annotation(annotations) is None


def test_hand_written_annotation_without_id_or_full_is_accepted() -> None:
    # `kubectl annotate mdep churn modelrollout.dev/verb='{"name":"abort"}'` works without the plugin.
    assert parse_verb_annotation({VERB_ANNOTATION: '{"name": "abort"}'}) == Verb(name="abort")


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("promote", "Invalid JSON"),
        ("", "Invalid JSON"),
        ('["promote"]', "object"),
        ('{"name": "jump"}', "name: Input should be 'promote'"),
        ('{"full": true}', "name: Field required"),
        ('{"name": "abort", "full": true}', "full applies only to promote"),
        ('{"name": "abort", "force": true}', "force: Extra inputs"),
        ('{"name": "abort", "id": ""}', "id: String should have at least 1 character"),
        ('{"name": "abort", "id": "' + "x" * 129 + '"}', "id: String should have at most 128"),
    ],
)
def test_invalid_value_says_what_is_wrong_and_what_is_expected(value: str, expect: str) -> None:
    with pytest.raises(InvalidVerbAnnotation) as raised:
        parse_verb_annotation({VERB_ANNOTATION: value})
    message = str(raised.value)
    assert expect in message
    assert VERB_ANNOTATION in message
    assert '"name": "promote"' in message  # an example of a valid value


def test_invalid_annotation_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a verb"):
        parse_verb_annotation({VERB_ANNOTATION: "{}"})
