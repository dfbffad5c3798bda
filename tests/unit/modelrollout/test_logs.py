"""JSON logs: one object per line, with the object a record is about, and a traceback as one string."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from modelrollout.logs import JsonFormatter, about, configure, ref, tell


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("modelrollout.reconciler", logging.WARNING, __file__, 1, message, args, None)
    made.created = 1795953600.5  # 2026-11-29T12:00:00.5Z
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_json_line_with_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(record("pass of %s took %.1fs", "iris", 0.25))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-11-29T12:00:00.500Z",
        "level": "WARNING",
        "logger": "modelrollout.reconciler",
        "message": "pass of iris took 0.2s",
    }


def test_the_object_of_a_record_ours_or_kopfs_becomes_namespace_and_name() -> None:
    ours = json.loads(JsonFormatter().format(record("refused", **ref("ml", "iris"))))
    kopf_ref = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelDeployment", "name": "churn"}
    kopf_ref["namespace"] = "ml"
    kopfs = json.loads(JsonFormatter().format(record("Handler succeeded.", k8s_ref=kopf_ref)))
    assert (ours["namespace"], ours["name"]) == ("ml", "iris")
    assert (kopfs["namespace"], kopfs["name"]) == ("ml", "churn")
    cluster_scoped = json.loads(JsonFormatter().format(record("x", **ref(None, "crd"))))
    assert "namespace" not in cluster_scoped
    assert cluster_scoped["name"] == "crd"


def test_a_traceback_is_one_string_and_odd_values_do_not_break_the_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        failed = record("pass failed: %s", object())
        failed.exc_info = sys.exc_info()
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["exc_info"].startswith("Traceback")
    assert "ValueError: bad\nvalue" in parsed["exc_info"]
    assert parsed["message"].startswith("pass failed: <object object")


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("text", False)])
def test_configure_sets_one_stderr_handler(
    log_format: str, json_lines: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        configure("json" if json_lines else "text")
        assert len(root.handlers) == 1
        logging.getLogger("kopf.objects").info("hello", extra=ref("ml", "iris"))
        err = capsys.readouterr().err.strip().splitlines()[-1]
        if json_lines:
            assert json.loads(err)["message"] == "hello"
        else:
            assert err.endswith("INFO kopf.objects: hello")
    finally:
        root.handlers[:], root.level = before


def test_a_record_written_during_a_pass_says_where_that_rollout_stands() -> None:
    outside = json.loads(JsonFormatter().format(record("resync")))
    assert "name" not in outside
    with about("ml", "iris", revision="aaaa1111", step=None, phase="Healthy"):
        # Any library's record during the pass: the HTTP client's request to Prometheus, say.
        start = json.loads(JsonFormatter().format(record("HTTP Request: GET /api/v1/query")))
        tell(revision="bbbb2222", step=1, phase="Progressing")
        decided = json.loads(JsonFormatter().format(record("iris WeightSet", **ref("ml", "iris"))))
        other = json.loads(JsonFormatter().format(record("released", **ref("ml", "churn"))))
    after = json.loads(JsonFormatter().format(record("resync")))
    assert (start["namespace"], start["name"], start["revision"], start["phase"]) == (
        "ml",
        "iris",
        "aaaa1111",
        "Healthy",
    )
    assert "step" not in start  # unknown is left out, never null
    assert (decided["revision"], decided["step"], decided["phase"]) == ("bbbb2222", 1, "Progressing")
    assert other["name"] == "churn"
    assert "revision" not in other  # a record about another object never borrows this pass's position
    assert "name" not in after
    tell(revision="x")  # outside a pass: nothing to update, nothing raised


async def test_concurrent_passes_keep_their_own_position() -> None:
    async def pass_of(name: str, revision: str) -> dict[str, object]:
        with about("ml", name, revision=revision):
            await asyncio.sleep(0.01)
            tell(step=2)
            await asyncio.sleep(0.01)
            line: dict[str, object] = json.loads(JsonFormatter().format(record("applied")))
            return line

    first, second = await asyncio.gather(pass_of("iris", "r1"), pass_of("churn", "r2"))
    assert (first["name"], first["revision"], first["step"]) == ("iris", "r1", 2)
    assert (second["name"], second["revision"], second["step"]) == ("churn", "r2", 2)
