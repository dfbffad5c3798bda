"""A rollout tick's latency from watched statuses and routing (bench/operator/ticks.py)."""

from __future__ import annotations

import pytest
from bench.operator.ticks import RouteSeen, StatusSeen, TickSample, ticks, weight_at

T0 = 1_000_000.0
PAUSES = {1: 5.0, 3: 5.0}


def test_each_pause_is_timed_from_its_end_to_the_next_step_and_the_routing_change() -> None:
    statuses = [
        StatusSeen(T0 + 0.2, 1, T0, "Progressing"),
        StatusSeen(T0 + 1.0, 1, T0, "Progressing"),  # a later status of the same pause changes nothing
        StatusSeen(T0 + 5.3, 3, T0 + 5.1, "Progressing"),
        StatusSeen(T0 + 10.5, None, None, "Healthy"),  # promoted: past the last pause
    ]
    routes = [RouteSeen(T0 + 0.1, 10), RouteSeen(T0 + 5.2, 20), RouteSeen(T0 + 5.25, 20), RouteSeen(T0 + 10.4, 0)]
    samples = ticks(statuses, routes, PAUSES)
    assert [s.step for s in samples] == [1, 3]
    first, second = samples
    assert first.pause_end == T0 + 5.0
    assert first.status_s == pytest.approx(0.3)
    assert first.routing_s == pytest.approx(0.2)
    assert second.pause_end == T0 + 10.1
    assert second.status_s == pytest.approx(0.4)
    assert second.routing_s == pytest.approx(0.3)


def test_a_pause_never_seen_is_left_out_and_a_missing_change_is_none() -> None:
    statuses = [StatusSeen(T0 + 0.2, 1, T0, "Progressing")]
    assert ticks(statuses, [], PAUSES) == [TickSample(step=1, pause_end=T0 + 5.0, status_s=None, routing_s=None)]
    assert ticks([], [], PAUSES) == []


def test_an_early_move_shows_as_a_negative_latency() -> None:
    statuses = [StatusSeen(T0 + 0.2, 1, T0, "Progressing"), StatusSeen(T0 + 3.0, 3, T0 + 2.9, "Progressing")]
    routes = [RouteSeen(T0 + 0.1, 10), RouteSeen(T0 + 2.95, 20)]
    (sample, _) = ticks(statuses, routes, PAUSES)
    assert sample.status_s == pytest.approx(-2.0)
    assert sample.routing_s == pytest.approx(-2.05)


def test_weight_at_is_the_last_weight_seen_by_then() -> None:
    routes = [RouteSeen(1.0, 10), RouteSeen(2.0, 20)]
    assert weight_at(routes, 0.5) is None
    assert weight_at(routes, 1.0) == 10
    assert weight_at(routes, 3.0) == 20


def test_a_step_whose_status_is_written_before_its_routing_is_timed_from_the_pause_end() -> None:
    # The operator records a step (status) and then routes it: the step's own weight arrives just after the status
    # that shows the pause; the tick is the change at the pause's end, not that one.
    statuses = [StatusSeen(T0 + 0.02, 1, T0, "Progressing"), StatusSeen(T0 + 5.03, 2, T0 + 5.0, "Progressing")]
    routes = [RouteSeen(T0 - 3.0, 10), RouteSeen(T0 + 0.04, 20), RouteSeen(T0 + 5.04, 30)]
    (sample,) = ticks(statuses, routes, {1: 5.0})
    assert sample.routing_s == pytest.approx(0.04)
    assert sample.status_s == pytest.approx(0.03)
