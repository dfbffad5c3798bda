"""OutputReader: a child's output read in chunks that split multi-byte characters still reads as the text sent."""

from __future__ import annotations

import asyncio

import pytest
from testkit.processes import OutputReader

RULE = "─" * 40 + " Progressing ─────"


async def test_a_character_split_across_reads_is_kept() -> None:
    stream = asyncio.StreamReader()
    encoded = RULE.encode()
    reader = OutputReader(stream)
    stream.feed_data(encoded[:1])  # one byte of a three-byte box-drawing character
    waiting = asyncio.create_task(reader.until("Progressing", within=5))
    await asyncio.sleep(0)
    stream.feed_data(encoded[1:])
    await waiting
    assert reader.text == RULE


async def test_the_end_of_output_without_the_text_fails_at_once() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data("─ nothing here".encode())
    stream.feed_eof()
    with pytest.raises(AssertionError, match="ended without 'Progressing'"):
        await OutputReader(stream).until("Progressing", within=60)


async def test_silence_fails_after_the_time_given() -> None:
    with pytest.raises(AssertionError, match="timed out"):
        await OutputReader(asyncio.StreamReader()).until("Progressing", within=0.05)
