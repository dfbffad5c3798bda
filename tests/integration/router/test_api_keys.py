"""API keys and per-key rate limits in the real router (`--api-keys-file`), in front of a real model server: 401
without a valid key, 429 with Retry-After over a key's rate and admitted again once it passed, the keys file re-read
when it changes, and a router refusing to start on an invalid one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.router.conftest import Fleet, StartRouter, document, v2_body, write_atomically
from tests.integration.router.test_routing_v2 import INFER

pytestmark = pytest.mark.integration

KEY, OTHER = "team-a-key-0123456789", "team-b-key-0123456789"
# One a second: the burst and five more are sent within a second on any machine, so some are always refused.
RATE, BURST = 1, 5


def keys_file(path: Path, *entries: dict[str, object]) -> Path:
    write_atomically(path, {"keys": list(entries)})
    return path


def test_keys_and_limits_in_front_of_the_model(fleet: Fleet, start_router: StartRouter, tmp_path: Path) -> None:
    path = keys_file(tmp_path / "keys.json", {"name": "team-a", "key": KEY, "requestsPerSecond": RATE, "burst": BURST})
    router = start_router(document(canary=None), upstreams=fleet.upstreams("clf"), args=("--api-keys-file", str(path)))
    body = v2_body(fleet.x[0])
    with httpx.Client(base_url=router.url, timeout=30) as client:
        assert client.get("/readyz").status_code == 200  # probes need no key
        anonymous = client.post(INFER, json=body)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert client.post(INFER, json=body, headers={"x-api-key": OTHER}).status_code == 401
        # Sent back to back: the burst is admitted, then the bucket is empty (a token flows back each second).
        started = time.monotonic()
        answers = [client.post(INFER, json=body, headers={"authorization": f"Bearer {KEY}"}) for _ in range(BURST + 5)]
        elapsed = time.monotonic() - started
        codes = [r.status_code for r in answers]
        admitted = codes.count(200)
        assert codes[:BURST] == [200] * BURST
        assert admitted <= BURST + int(elapsed * RATE) + 1, (codes, elapsed)  # never more than burst + rate x time
        limited = [r for r in answers if r.status_code == 429]
        assert limited, (codes, elapsed)
        assert limited[0].headers["retry-after"] == "1"
        assert "over its limit of 1 requests a second" in limited[0].json()["error"]
        time.sleep(1.0 / RATE + 0.05)
        assert client.post(INFER, json=body, headers={"x-api-key": KEY}).status_code == 200
        # A second key added to the file is taken without a restart (the file is polled), the first key removed.
        keys_file(path, {"name": "team-b", "key": OTHER})
        deadline = time.monotonic() + 10
        while client.post(INFER, json=body, headers={"x-api-key": OTHER}).status_code != 200:
            assert time.monotonic() < deadline, "the new key was not taken"
            time.sleep(0.1)
        assert client.post(INFER, json=body, headers={"x-api-key": KEY}).status_code == 401
    assert router.sample("modelrouter_api_key_requests_total", route="clf", key="team-a", result="rate_limited") == len(
        limited
    )
    assert router.sample("modelrouter_rejected_total", route="clf", reason="unauthorized") >= 2


def test_a_router_with_an_invalid_keys_file_does_not_start(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "a", "key": "short"}]}))
    config = tmp_path / "router.json"
    write_atomically(config, document(canary=None))
    command = [sys.executable, "-m", "modelserver", "route", "--port", "0", "--config-file", str(config),
               "--api-keys-file", str(path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "keys.0.key: Value should have at least 16 items" in done.stderr
