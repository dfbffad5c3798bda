import socket

import pytest
from testkit.ports import PortAllocator, ephemeral_range, free_port, pool, worker_slice


def test_ports_come_from_outside_the_ephemeral_range() -> None:
    assert ephemeral_range("32768\t60999\n") == (32768, 60999)
    assert pool((32768, 60999)) == range(10_000, 32768)
    assert pool((10_500, 60_999)) == range(61_000, 65_536), "no room below: above"
    with pytest.raises(RuntimeError, match="ephemeral range"):
        pool((10_500, 64_999))
    low, high = ephemeral_range()
    assert not low <= free_port() <= high


def test_workers_draw_from_disjoint_slices() -> None:
    ports = range(10_000, 32768)
    slices = [set(worker_slice(ports, f"gw{i}")) for i in range(16)]
    assert all(len(s) >= 1000 for s in slices)
    assert sum(len(s) for s in slices) == len(set().union(*slices)), "no port in two slices"
    assert worker_slice(ports, None) == worker_slice(ports, "gw0")


def test_a_port_is_handed_out_once_and_never_while_something_listens() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        taken.listen()
        allocate = PortAllocator(range(busy, busy + 1))
        with pytest.raises(RuntimeError, match="in use"):
            allocate()
    allocate = PortAllocator(range(20_000, 20_050))
    handed = [allocate() for _ in range(20)]
    assert len(set(handed)) == 20
