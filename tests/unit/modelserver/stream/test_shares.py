"""A consumer's share of a topic's records by key: the router's bucket of a message's key, keyless messages
spread by their partition and offset, and complementary shares splitting a batch with each record on one side."""

from __future__ import annotations

import zlib

from confluent_kafka import Message

from modelrollout_contract.sticky import BUCKETS, bucket, keyless_bucket, message_bucket
from modelserver.stream.shares import bucket_of, in_share


def message(key: bytes | None, partition: int = 0, offset: int = 0) -> Message:
    return Message(topic="events", partition=partition, offset=offset, key=key, value=b"[]")


def test_a_keyed_message_falls_in_the_bucket_the_router_gives_its_key() -> None:
    for key in ("user-1", "42", "ü-ñ", ""):
        assert message_bucket(key.encode(), 3, 17) == bucket(key)
        assert bucket_of(message(key.encode(), 3, 17)) == bucket(key)
    # the place of a keyed message does not matter
    assert bucket_of(message(b"user-1", 0, 1)) == bucket_of(message(b"user-1", 5, 99_999))


def test_a_keyless_message_falls_in_the_bucket_of_its_partition_and_offset() -> None:
    assert keyless_bucket(2, 1234) == zlib.crc32(b"2:1234") % BUCKETS
    assert message_bucket(None, 2, 1234) == keyless_bucket(2, 1234)
    assert bucket_of(message(None, 2, 1234)) == keyless_bucket(2, 1234)
    # an empty key is a key, not a missing one
    assert message_bucket(b"", 2, 1234) == bucket("")
    # keyless messages spread over the buckets: a 30% share gets about 30% of them
    share = sum(keyless_bucket(p, o) < 3000 for p in range(4) for o in range(5000)) / 20_000
    assert 0.28 < share < 0.32


def test_complementary_shares_split_a_batch_with_every_record_on_exactly_one_side() -> None:
    batch = [message(f"user-{i % 300}".encode() if i % 5 else None, i % 4, i // 4) for i in range(4000)]
    low, high = in_share(batch, (0, 3000)), in_share(batch, (3000, BUCKETS))
    assert all(a != b for a, b in zip(low, high, strict=True))
    assert 0.2 < sum(low) / len(batch) < 0.4
    for m, mine in zip(batch, low, strict=True):
        assert mine == (bucket_of(m) < 3000)
    # one key, one side: every message of a user goes to the same consumer
    sides: dict[bytes, set[bool]] = {}
    for m, mine in zip(batch, low, strict=True):
        if m.key() is not None:
            sides.setdefault(m.key() or b"", set()).add(mine)
    assert all(len(side) == 1 for side in sides.values())


def test_no_share_is_every_record_and_an_empty_share_is_none() -> None:
    batch = [message(b"a"), message(None, 1, 2)]
    assert in_share(batch, None) == [True, True]
    assert in_share(batch, (0, BUCKETS)) == [True, True]
    assert in_share(batch, (500, 500)) == [False, False]
