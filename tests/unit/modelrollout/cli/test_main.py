"""The command line itself: help, usage errors (exit 2) and failures before any API answers (exit 3), through
typer's CliRunner. Talking to a real API server is tests/integration/cli."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit.ports import free_port
from typer.testing import CliRunner

from modelrollout.cli import main
from modelrollout.cli.kube import connect
from modelrollout.cli.main import app

VERBS = ("promote", "abort", "retry", "pause", "resume", "undo")
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), prog_name="kubectl modelrollout", env=env)
    return result.exit_code, result.stdout, result.stderr


def kubeconfig(tmp_path: Path, *, server: str, namespace: str | None = None) -> Path:
    context: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    body = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "main", "context": context}, {"name": "other", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "main",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(body))
    return path


def closed_port() -> int:
    return free_port()


def test_help_lists_every_command() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    assert "kubectl modelrollout" in out
    for command in ("status", "list", *VERBS):
        assert command in out


def test_no_arguments_shows_help() -> None:
    code, out, err = invoke()
    assert code in (0, 2)  # click's no_args_is_help exits 2 from click 8.2 on
    assert "status" in out + err


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_the_delivery_options(verb: str) -> None:
    code, out, _ = invoke(verb, "--help")
    assert code == 0
    for option in ("--namespace", "-n", "--kubeconfig", "--context", "--wait", "--no-wait", "--timeout", "--force"):
        assert option in out
    assert ("--full" in out) == (verb == "promote")


def test_status_options() -> None:
    code, out, _ = invoke("status", "--help")
    assert code == 0
    for option in ("--watch", "--output", "table", "json", "yaml", "--namespace", "--kubeconfig", "--context"):
        assert option in out


def test_list_options() -> None:
    code, out, _ = invoke("list", "--help")
    assert code == 0
    assert "--all-namespaces" in out
    assert "-A" in out


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("promote",), "Missing argument 'NAME'"),
        (("status",), "Missing argument 'NAME'"),
        (("rollback", "churn"), "No such command"),
        (("abort", "churn", "--full"), "No such option: --full"),
        (("promote", "churn", "--timeout", "soon"), "'soon' is not a duration"),
        (("promote", "churn", "--timeout", "0s"), "must be more than 0"),
        (("status", "churn", "-o", "xml"), "xml"),
        (("list", "extra"), "unexpected extra argument"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], expect: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert expect.lower() in (out + err).lower()


@pytest.mark.parametrize("args", [("status", "churn"), ("list",), ("pause", "churn"), ("promote", "churn", "--full")])
def test_a_missing_kubeconfig_is_exit_3_in_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = invoke(*args, "--kubeconfig", str(missing))
    assert code == 3
    assert err.startswith("error: cannot load kubeconfig")
    assert str(missing) in err
    assert "Traceback" not in out + err


def test_an_unreachable_api_server_is_exit_3(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, server=f"http://127.0.0.1:{closed_port()}")
    code, out, err = invoke("status", "churn", "--kubeconfig", str(config))
    assert code == 3
    assert "error: reading modeldeployment churn: cannot reach the API server" in err
    assert "Traceback" not in out + err


def test_kubeconfig_from_the_environment(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, server=f"http://127.0.0.1:{closed_port()}")
    code, _, err = invoke("list", env={"KUBECONFIG": str(config)})
    assert code == 3
    assert "cannot reach the API server" in err


def test_an_unknown_context_is_exit_3(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, server="http://127.0.0.1:1")
    code, _, err = invoke("status", "churn", "--kubeconfig", str(config), "--context", "nowhere")
    assert code == 3
    assert "cannot load kubeconfig" in err
    assert "nowhere" in err


async def test_the_namespace_defaults_to_the_contexts(tmp_path: Path) -> None:
    config = str(kubeconfig(tmp_path, server="http://127.0.0.1:1", namespace="team-a"))
    current = await connect(kubeconfig=config, context=None)
    other = await connect(kubeconfig=config, context="other")
    try:
        assert current.namespace == "team-a"
        assert other.namespace == "default"
    finally:
        await current.api.close()
        await other.api.close()


@pytest.mark.parametrize(
    ("args", "at"),
    [
        (("run", "nightly"), None),
        (("run", "nightly", "--date", "2026-12-01"), datetime(2026, 12, 1, tzinfo=UTC)),
        (("run", "nightly", "--date", "2026-12-01T02:00:00+01:00"), datetime(2026, 12, 1, 1, tzinfo=UTC)),
    ],
)
def test_run_delivers_a_run_verb_with_the_date_to_score(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], at: datetime | None
) -> None:
    calls: list[tuple[Any, ...]] = []

    async def fake(verb_name: str, target: Any, *, name: str, full: bool, how: Any, at: Any = None) -> int:
        calls.append((verb_name, name, at))
        return 0

    monkeypatch.setattr(main, "_deliver", fake)
    code, _, err = invoke(*args)
    assert code == 0, err
    assert calls == [("run", "nightly", at)]


def test_run_refuses_a_date_it_cannot_read() -> None:
    code, _, err = invoke("run", "nightly", "--date", "yesterday")
    assert code != 0
    assert "'yesterday' is not a date or time" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("promote", "churn"), ("promote", False, True, "60s", False)),
        (("promote", "churn", "--full", "--no-wait"), ("promote", True, False, "60s", False)),
        (("abort", "churn", "--timeout", "2m", "--force"), ("abort", False, True, "2m", True)),
        (("retry", "churn"), ("retry", False, True, "60s", False)),
        (("pause", "churn", "--no-wait"), ("pause", False, False, "60s", False)),
        (("resume", "churn", "--wait", "--timeout", "5"), ("resume", False, True, "5", False)),
        (("undo", "churn", "-n", "prod", "--context", "ctx"), ("undo", False, True, "60s", False)),
        # before the command, as `kubectl modelrollout -n prod ...` (kubectl refuses flags before a plugin)
        (("-n", "prod", "--context", "ctx", "undo", "churn"), ("undo", False, True, "60s", False)),
        (("-n", "other", "--context", "ctx", "undo", "churn", "-n", "prod"), ("undo", False, True, "60s", False)),
    ],
)
def test_each_verb_command_delivers_its_verb(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], expected: tuple[Any, ...]
) -> None:
    calls: list[tuple[Any, ...]] = []

    async def fake(verb_name: str, target: Any, *, name: str, full: bool, how: Any, at: Any = None) -> int:
        calls.append((verb_name, target, name, full, how))
        return 0

    monkeypatch.setattr(main, "_deliver", fake)
    code, _, err = invoke(*args)
    assert code == 0, err
    ((verb_name, target, name, full, how),) = calls
    assert name == "churn"
    assert (verb_name, full, how.wait, how.timeout, how.force) == expected
    if "-n" in args:
        assert (target.namespace, target.context) == ("prod", "ctx")
