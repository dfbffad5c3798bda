"""Loopback ports for the processes tests start, chosen so nothing else can take them before they are bound.

A port from `bind(("127.0.0.1", 0))` is an ephemeral port: once that socket closes, the kernel may give the same
port to any outgoing connection (an HTTP client, the API server's watch) in the seconds before our process binds
it — Prometheus then failed with "address already in use" after the model servers' 8 s start. So ports come from
below the kernel's ephemeral range (net.ipv4.ip_local_port_range), which it never hands out on its own; each
xdist worker draws from its own slice, so two workers never pick the same one; and a port is handed out only if
it can be bound right now (nothing of anyone else's listens there).
"""

from __future__ import annotations

import os
import random
import socket
from itertools import count
from pathlib import Path

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000  # below: well-known and registered services of the machine
SLICES = 16  # at most this many xdist workers


def ephemeral_range(text: str | None = None) -> tuple[int, int]:
    """The kernel's ephemeral range (Linux; the IANA range elsewhere)."""
    if text is None:
        text = RANGE_FILE.read_text() if RANGE_FILE.exists() else "49152 65535"
    low, high = (int(part) for part in text.split())
    return low, high


def pool(ephemeral: tuple[int, int]) -> range:
    """Ports outside the ephemeral range: below it when there is room there, else above it."""
    low, high = ephemeral
    if low - LOWEST >= 2_000:
        return range(LOWEST, low)
    if 65_535 - high >= 2_000:
        return range(high + 1, 65_536)
    raise RuntimeError(f"no room for test ports outside the ephemeral range {low}-{high}; widen the gap")


def worker_slice(ports: range, worker: str | None) -> range:
    """This process's share of `ports`: by xdist worker (gw0, gw1, ...), slice 0 without xdist."""
    index = int(worker.removeprefix("gw")) if worker and worker.startswith("gw") else 0
    size = len(ports) // SLICES
    start = ports.start + (index % SLICES) * size
    return range(start, start + size)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out each port of its slice once, in order from a random start (two test sessions that run at once
    in the same slice then rarely meet), skipping any port something already listens on."""

    def __init__(self, ports: range) -> None:
        self._ports = ports
        self._next = count(random.randrange(len(ports)))
        self._handed = 0

    def __call__(self) -> int:
        while self._handed < len(self._ports):
            port = self._ports[next(self._next) % len(self._ports)]
            self._handed += 1
            if _bindable(port):
                return port
        raise RuntimeError(f"every port of {self._ports} was handed out or is in use")


free_port = PortAllocator(worker_slice(pool(ephemeral_range()), os.environ.get("PYTEST_XDIST_WORKER")))
