from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from prometheus_client import CollectorRegistry
from testkit.vectors import full_document as vector

from modelserver.routing.metrics import RouterMetrics
from modelserver.routing.reload import Routing
from modelserver.routing.sources import Backoff, FileSource


def test_backoff_doubles_to_a_ceiling_and_resets() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


def write(path: Path, canary: int) -> None:
    """Atomically, as the file source asks: a temp file renamed over the target."""
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(vector() | {"weights": {"stable": 100 - canary, "canary": canary}}))
    os.replace(temp, path)


async def canary_weight(routing: Routing, expected: int) -> None:
    for _ in range(500):
        if routing.snapshot is not None and routing.snapshot.config.weight_of("canary") == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the canary weight did not become {expected}")


async def test_the_file_source_follows_changes_and_survives_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    routing = Routing(metrics=RouterMetrics(CollectorRegistry()))
    task = asyncio.create_task(FileSource(path, interval_s=0.01).run(routing))
    try:
        await asyncio.sleep(0.05)
        assert routing.snapshot is None  # no file yet: nothing to serve with
        write(path, 10)
        await canary_weight(routing, 10)
        write(path, 40)
        await canary_weight(routing, 40)
        good = routing.snapshot
        path.write_text("{ half a docu")
        await asyncio.sleep(0.1)
        assert routing.snapshot is good
        path.unlink()
        await asyncio.sleep(0.1)
        assert routing.snapshot is good
        write(path, 0)
        await canary_weight(routing, 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
