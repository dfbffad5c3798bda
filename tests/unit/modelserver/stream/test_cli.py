"""`modelserver stream` flags: settings that cannot work exit 2 with the reason before anything starts; a model
that does not load exits 3 (Kafka is never contacted)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelserver.cli import app

BASE = ["stream", "-b", "127.0.0.1:1", "-i", "events", "-o", "scores", "-g", "g", "--instance-id", "a"]


@pytest.fixture
def isolated() -> Iterator[None]:
    """The command installs its SIGTERM/SIGINT handlers and configures logging: pytest's are put back after."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    loggers = [logging.getLogger(name) for name in ("modelserver", "uvicorn", "uvicorn.access", "")]
    state = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    for lg, handlers, level, propagate in state:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*BASE, "-m", "/m.joblib"], "dead_letter_topic is required for exactly-once"),
        (
            [*BASE, "-m", "/m.joblib", "--delivery", "at-least-once", "--key-from", "7000", "--key-to", "10"],
            "key_from 7000 must not be above key_to 10",
        ),
        ([*BASE, "--dead-letter-topic", "dlq"], "model_uri is required"),
        (["stream", "-m", "/m.joblib", "--dead-letter-topic", "dlq"], "bootstrap_servers"),
    ],
)
def test_invalid_stream_flags_exit_2_with_the_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_model_that_does_not_load_exits_3(tmp_path: Path, isolated: None) -> None:
    missing = tmp_path / "missing.joblib"
    args = [*BASE, "--dead-letter-topic", "dlq", "-m", str(missing), "--metrics-port", "0", "--log-text"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
