"""/healthz and /readyz answer from the checks they are given, on the event loop, with the role for people."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from testkit.ports import free_port

from modelrollout.probes import Probes


class State:
    live = True
    ready = False


@pytest.fixture
async def served() -> AsyncIterator[tuple[State, str]]:
    state = State()
    probes = Probes(live=lambda: state.live, ready=lambda: state.ready, describe=lambda: {"role": "standby"})
    port = free_port()
    await probes.start(port, host="127.0.0.1")
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await probes.stop()


async def test_each_probe_answers_its_own_check(served: tuple[State, str]) -> None:
    state, url = served
    async with httpx.AsyncClient() as http:
        live, ready = await http.get(f"{url}/healthz"), await http.get(f"{url}/readyz")
        assert (live.status_code, ready.status_code) == (200, 503)
        assert ready.json() == {"ok": False, "role": "standby"}
        state.ready, state.live = True, False
        live, ready = await http.get(f"{url}/healthz"), await http.get(f"{url}/readyz")
        assert (live.status_code, ready.status_code) == (503, 200)


async def test_port_zero_serves_nothing() -> None:
    probes = Probes(live=lambda: True, ready=lambda: True, describe=dict)
    await probes.start(0)
    await probes.stop()
