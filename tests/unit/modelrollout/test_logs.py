"""JSON logs: one object per line, with the object a record is about, and a traceback as one string."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from modelrollout.logs import JsonFormatter, configure, ref


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
