"""The share document of a stream rollout: what a valid one says once parsed, that it reads back what it writes,
and that a document that cannot be used is refused with its reason (modelrollout_contract.stream)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from modelrollout_contract.stream import (
    CONFIG_KEY,
    Member,
    ShareDocument,
    ShareDocumentError,
    parse_document,
    to_document,
)

ROLLOUT: dict[str, Any] = {
    "schemaVersion": 1,
    "epoch": 3,
    "leader": {"revision": "7f3c9a1b2d", "group": "shop.churn"},
    "follower": {"revision": "a81d44e0c5", "group": "shop.churn-a81d44e0c5"},
    "percent": 50,
    "final": False,
}


def changed(**fields: Any) -> str:
    document = json.loads(json.dumps(ROLLOUT))
    for key, value in fields.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document)


def test_the_documented_example_parses() -> None:
    document = parse_document(json.dumps(ROLLOUT))
    assert document.epoch == 3
    assert document.leader == Member(revision="7f3c9a1b2d", group="shop.churn")
    assert document.follower == Member(revision="a81d44e0c5", group="shop.churn-a81d44e0c5")
    assert (document.percent, document.final) == (50, False)
    assert document.role_of("7f3c9a1b2d") == "leader"
    assert document.role_of("a81d44e0c5") == "follower"
    assert document.role_of("0000000000") is None
    assert parse_document(json.dumps(ROLLOUT).encode()) == document  # bytes, as a ConfigMap's data may be
    assert CONFIG_KEY == "stream.json"


def test_a_leader_alone_takes_the_defaults() -> None:
    document = parse_document('{"schemaVersion": 1, "epoch": 0, "leader": {"revision": "7f3c9a1b2d", "group": "g"}}')
    assert document.follower is None
    assert (document.percent, document.final) == (0, False)
    assert document.role_of("7f3c9a1b2d") == "leader"
    assert document.role_of("a81d44e0c5") is None


@pytest.mark.parametrize(
    "document",
    [
        ShareDocument(epoch=0, leader=Member(revision="7f3c9a1b2d", group="shop.churn")),
        ShareDocument.model_validate(ROLLOUT),
        ShareDocument(
            epoch=9,
            leader=Member(revision="7f3c9a1b2d", group="shop.churn"),
            follower=Member(revision="a81d44e0c5", group="shop.churn-a81d44e0c5"),
            percent=100,
            final=True,
        ),
    ],
)
def test_a_document_reads_back_what_it_writes(document: ShareDocument) -> None:
    text = to_document(document)
    assert parse_document(text) == document
    assert to_document(parse_document(text)) == text
    written = json.loads(text)
    assert written["schemaVersion"] == 1  # the wire names are camelCase
    assert "schema_version" not in written


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "a share document is a JSON object"),
        ('"stream"', "a share document is a JSON object"),
        (changed(schemaVersion=2), "schemaVersion 2 is not one this reader knows (1)"),
        (changed(schemaVersion="1"), "schemaVersion '1' is not one this reader knows (1)"),
        (changed(schemaVersion=None), "schemaVersion None is not one this reader knows (1)"),
        (
            changed(follower={"revision": "7f3c9a1b2d", "group": "shop.churn-b"}),
            "the follower needs a revision and a consumer group of its own",
        ),
        (
            changed(follower={"revision": "a81d44e0c5", "group": "shop.churn"}),
            "the follower needs a revision and a consumer group of its own",
        ),
        (changed(follower=None), "percent and final need a follower"),
        (changed(follower=None, percent=0, final=True), "percent and final need a follower"),
        (changed(final=True), "a final epoch gives the follower all records (100, promoted) or none (0, rolled back)"),
        (changed(leader={"revision": "7F3C9A1B2D", "group": "shop.churn"}), "leader.revision: String should match"),
        (changed(leader={"revision": "-7f3c", "group": "shop.churn"}), "leader.revision: String should match"),
        (changed(leader={"revision": "a" * 64, "group": "shop.churn"}), "leader.revision: String should match"),
        (changed(follower={"revision": "a_b", "group": "g2"}), "follower.revision: String should match"),
        (changed(leader={"revision": "7f3c9a1b2d", "group": ""}), "leader.group"),
        (changed(epoch=-1), "epoch: Input should be greater than or equal to 0"),
        (changed(epoch=None), "epoch: Field required"),
        (changed(leader=None), "leader: Field required"),
        (changed(percent=101), "percent: Input should be less than or equal to 100"),
        (changed(weight=5), "weight: Extra inputs are not permitted"),
    ],
)
def test_a_document_that_cannot_be_used_is_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ShareDocumentError, match=re.escape(problem)):
        parse_document(text)


def test_a_refused_document_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_document("nope")
