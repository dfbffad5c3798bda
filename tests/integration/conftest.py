"""The integration suite's order: its longest files first, so that the two workers (`--dist loadfile`: a file runs
whole on one worker, keeping its module fixtures, a Kafka broker or a cluster's operator, to itself) end together.
xdist's own reordering puts the files with the most tests first, which left the long files of few tests (a stream
rollout through kills and a broker restart: 3 tests, 78 s) for the end, on one worker while the other idled; the
Makefile turns it off (--no-loadscope-reorder) for this order.

LONGEST_FIRST is measured (seconds a file took in CI run62, `--durations=0`); a file not listed runs after them in
collection order. A stale entry costs balance only, never a test."""

from __future__ import annotations

from pathlib import Path

import pytest

LONGEST_FIRST = (
    "operator/test_online.py",  # 124 s
    "modelserver/test_stream.py",  # 100 s
    "modelserver/test_stream_rollout.py",  # 78 s
    "api/test_admission.py",  # 70 s
    "traffic/test_operator.py",  # 63 s
    "image/test_image_install.py",  # 49 s
    "modelserver/test_batch.py",  # 48 s
    "cli/test_kubectl_plugin.py",  # 46 s
    "traffic/test_cleanup.py",  # 44 s
    "chart/test_install.py",  # 44 s
    "modelserver/test_fuzz_openapi.py",  # 42 s
    "router/test_routing_v2.py",  # 32 s
    "router/test_sticky.py",  # 30 s
    "operator/test_spec_edits.py",  # 29 s
    "operator/test_leader_election.py",  # 25 s
    "modelserver/test_grpc.py",  # 24 s
    "operator/test_refused_children.py",  # 23 s
    "operator/test_modes.py",  # 22 s
    "modelserver/test_runtimes_http.py",  # 22 s
    "router/test_routing.py",  # 20 s
)
_HERE = Path(__file__).parent
_RANK = {str(_HERE / name): rank for rank, name in enumerate(LONGEST_FIRST)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # sorted() is stable: the tests of a file keep their order, and unlisted files theirs.
    items[:] = sorted(items, key=lambda item: _RANK.get(str(item.path), len(_RANK)))
