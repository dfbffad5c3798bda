"""CoalescingTransport over an in-memory transport: what it sends, when, and that it sends nothing twice or late."""

from __future__ import annotations

import asyncio

from modelserver.http_protocol import DIRECT_WRITE_BYTES, CoalescingTransport


class Recorded:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True


async def next_turn() -> None:
    await asyncio.sleep(0)


async def test_the_writes_of_one_turn_go_out_as_one_after_it() -> None:
    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(memoryview(b"body"))
    assert real.writes == []
    await next_turn()
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")  # a later turn: a write of its own
    await next_turn()
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


async def test_a_close_sends_what_was_written_before_it() -> None:
    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last answer")
    transport.close()
    assert real.writes == [b"last answer"]
    assert real.closed
    await next_turn()  # the flush scheduled by the write finds nothing left to send
    assert real.writes == [b"last answer"]


async def test_nothing_is_written_to_a_transport_closed_meanwhile() -> None:
    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"answer")
    real.close()  # the peer went away in the same turn
    await next_turn()
    assert real.writes == []


async def test_everything_else_is_the_real_transport() -> None:
    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.pause_reading()
    assert real.paused
    assert not transport.is_closing()


async def test_a_large_write_goes_out_at_once_after_what_is_held() -> None:
    real = Recorded()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    large = b"x" * DIRECT_WRITE_BYTES
    transport.write(b"head")
    transport.write(large)
    assert real.writes == [b"head", large]
    transport.writelines([b"a", b"b"])
    await next_turn()
    assert real.writes == [b"head", large, b"ab"]
