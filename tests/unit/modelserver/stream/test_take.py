"""How the loop takes a micro-batch: the records ready at once, never held back to fill; only when none is ready,
a wait for the first one, then the rest that came with it."""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import Consumer

from modelserver.stream.run import take


class Queue:
    """consume(num_messages, timeout) over a list of batches: each call returns the next one, cut to num_messages;
    every call is recorded."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append((num_messages, timeout))
        return self.answers.pop(0)[:num_messages] if self.answers else []


def taken(queue: Queue, max_batch: int = 500, wait_s: float = 0.02) -> list[Any]:
    return cast("list[Any]", take(cast("Consumer", queue), max_batch, wait_s))


def test_records_ready_are_taken_without_waiting() -> None:
    queue = Queue(["a", "b", "c"])
    assert taken(queue) == ["a", "b", "c"]
    assert queue.calls == [(500, 0)]


def test_none_ready_waits_for_the_first_then_takes_what_came_with_it() -> None:
    queue = Queue([], ["a"], ["b", "c"])
    assert taken(queue) == ["a", "b", "c"]
    assert queue.calls == [(500, 0), (1, 0.02), (499, 0)]


def test_nothing_within_the_wait_is_an_empty_batch() -> None:
    queue = Queue([], [])
    assert taken(queue) == []
    assert queue.calls == [(500, 0), (1, 0.02)]


def test_a_batch_of_one_is_not_asked_for_zero_more() -> None:
    queue = Queue([], ["a"])
    assert taken(queue, max_batch=1) == ["a"]
    assert queue.calls == [(1, 0), (1, 0.02)]


def test_no_wait_never_blocks() -> None:
    queue = Queue([])
    assert taken(queue, wait_s=0) == []
    assert queue.calls == [(500, 0)]
