"""`kubectl modelrollout`: status, list and the rollout verbs (promote, abort, retry, pause, resume, undo).

Installed as the console script `kubectl-modelrollout`, which kubectl runs as a plugin. Exit codes: 0 ok; 1 the verb
was not applied (ignored by the operator, timed out, or another verb still pending); 2 usage error; 3 the object was
not found, or the API server or kubeconfig failed (one readable line, never a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from modelrollout.api.base import duration_seconds
from modelrollout.api.resource import ModelDeployment
from modelrollout.cli import deliver
from modelrollout.cli.errors import EXIT_API, EXIT_NOT_APPLIED, CliError
from modelrollout.cli.render import list_row, phase_text, render_list, render_status
from modelrollout.rollout.verbs import VERB_ANNOTATION, VerbName

if TYPE_CHECKING:
    from modelrollout.cli.kube import Api

PROG = "kubectl modelrollout"
EXIT_INTERRUPTED = 130
PIPE_WIDTH = 120  # rich's 80 columns wrap every table; kubectl does not wrap piped output either
REFRESH_S = 5.0  # --watch re-renders this often without changes, so ages and countdowns move

app = typer.Typer(
    name=PROG,
    help="Inspect and steer ModelDeployment rollouts. Verbs are delivered to the operator as the annotation "
    f"{VERB_ANNOTATION}; by default the command waits until the operator has applied them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The ModelDeployment's name.", show_default=False)]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace; the kubeconfig context's, or default.", show_default=False),
]
KubeconfigOpt = Annotated[
    str | None,
    typer.Option("--kubeconfig", help="Kubeconfig file; KUBECONFIG or ~/.kube/config otherwise.", show_default=False),
]
ContextOpt = Annotated[
    str | None, typer.Option("--context", help="Kubeconfig context; the current one otherwise.", show_default=False)
]
WaitOpt = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until the operator has applied the verb, and show the result.")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace a verb that is still pending (not yet applied by the operator).")
]


def _check_timeout(value: str) -> str:
    try:
        seconds = float(value) if value.replace(".", "", 1).isdigit() else duration_seconds(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a duration: use e.g. 30s, 2m or 90") from None
    if seconds <= 0:
        raise typer.BadParameter("must be more than 0")
    return value


def _seconds(value: str) -> float:
    return float(value) if value.replace(".", "", 1).isdigit() else duration_seconds(value)


TimeoutOpt = Annotated[
    str,
    typer.Option("--timeout", callback=_check_timeout, help="How long --wait waits: 30s, 2m, ... (a number: seconds)."),
]


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


# --- plumbing ------------------------------------------------------------------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


T = TypeVar("T")


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run the command's coroutine; a CliError becomes its message on stderr and its exit code."""
    try:
        return asyncio.run(work)
    except CliError as exc:
        _fail(exc.message)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # one line for the user; the traceback on request
        if os.environ.get("MODELROLLOUT_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (MODELROLLOUT_DEBUG=1 shows the traceback)")
        raise typer.Exit(EXIT_API) from None


@dataclass(frozen=True, slots=True)
class Target:
    """Where the command looks: --namespace, --kubeconfig, --context (None: the kubeconfig's choice)."""

    namespace: str | None
    kubeconfig: str | None
    context: str | None


@app.callback()
def _everywhere(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """-n/--kubeconfig/--context also before the command (`kubectl modelrollout -n prod status churn`): kubectl
    refuses flags before a plugin's name, so this is where they go for kubectl users."""
    ctx.obj = Target(namespace, kubeconfig, context)


def _target(ctx: typer.Context, namespace: str | None, kubeconfig: str | None, context: str | None) -> Target:
    """The command's own flags, else those given before the command."""
    given = ctx.obj if isinstance(ctx.obj, Target) else Target(None, None, None)
    return Target(namespace or given.namespace, kubeconfig or given.kubeconfig, context or given.context)


@contextlib.asynccontextmanager
async def _api(target: Target) -> AsyncIterator[Api]:
    from modelrollout.cli.kube import Api, connect  # noqa: PLC0415 - the Kubernetes client takes seconds to import

    connection = await connect(kubeconfig=target.kubeconfig, context=target.context)
    try:
        yield Api(connection, target.namespace or connection.namespace)
    finally:
        await connection.api.close()


def _parse(obj: dict[str, Any]) -> ModelDeployment:
    meta = obj.get("metadata", {})
    try:
        return ModelDeployment.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:5]
        )
        raise CliError(
            f"modeldeployment {meta.get('namespace')}/{meta.get('name')} does not match this CLI's schema "
            f"(is the CLI older than the operator?): {problems}"
        ) from None


def _for_output(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server has it, without managedFields (as kubectl shows it)."""
    shown = dict(obj)
    shown["metadata"] = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return shown


def _dump(obj: dict[str, Any], output: Output) -> str:
    if output is Output.json:
        return json.dumps(_for_output(obj), indent=2)
    return yaml.safe_dump(_for_output(obj), sort_keys=False)


# --- status --------------------------------------------------------------------------------------------------------


async def _view(api: Api, obj: dict[str, Any]) -> RenderableType:
    md = _parse(obj)
    events = await api.events(md.metadata.name or "", uid=md.metadata.uid)
    return render_status(md, [e.info for e in events])


async def _watch_status(api: Api, name: str, output: Output, console: Console) -> None:
    changes: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def follow() -> None:
        async with contextlib.aclosing(api.watch(name)) as stream:
            async for obj in stream:
                await changes.put(obj)

    follower = asyncio.create_task(follow())
    try:
        await _show_changes(api, name=name, output=output, console=console, changes=changes, follower=follower)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def _next_change(
    changes: asyncio.Queue[dict[str, Any] | None], follower: asyncio.Task[None], within: float | None
) -> dict[str, Any] | bool | None:
    """The next object (None: deleted), or False when `within` passed without a change. Watch errors surface."""
    getter = asyncio.ensure_future(changes.get())
    done, _ = await asyncio.wait({getter, follower}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    if follower in done:
        follower.result()  # raises the watch's CliError
        if not changes.empty():  # the last change and the end of the watch arrived together
            return changes.get_nowait()
        raise CliError("the watch ended unexpectedly")
    return False


async def _show_changes(
    api: Api,
    *,
    name: str,
    output: Output,
    console: Console,
    changes: asyncio.Queue[dict[str, Any] | None],
    follower: asyncio.Task[None],
) -> None:
    gone = f"modeldeployment {api.namespace}/{name} was deleted"
    if output is not Output.table:
        while (obj := await _next_change(changes, follower, None)) is not None:
            assert isinstance(obj, dict)
            typer.echo(_dump(obj, output) + ("---" if output is Output.yaml else ""))
        raise CliError(gone)
    if not console.is_terminal:  # a pipe or a file: every version in turn, nothing redrawn
        while (obj := await _next_change(changes, follower, None)) is not None:
            assert isinstance(obj, dict)
            console.print(await _view(api, obj))
            console.rule()
        raise CliError(gone)
    latest: dict[str, Any] | None = None
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            change = await _next_change(changes, follower, REFRESH_S if latest is not None else None)
            if change is None:
                raise CliError(gone)
            if isinstance(change, dict):
                latest = change
            if latest is not None:
                live.update(await _view(api, latest), refresh=True)


async def _status(name: str, target: Target, *, watch: bool, output: Output) -> None:
    console = _console()
    async with _api(target) as api:
        if watch:
            await _watch_status(api, name, output, console)
            return
        obj = await api.get(name)
        if output is Output.table:
            console.print(await _view(api, obj))
        else:
            _parse(obj)  # the same check as the table: the object must be one our models read
            typer.echo(_dump(obj, output))


@app.command()
def status(
    ctx: typer.Context,
    name: NameArg,
    *,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Re-render on every change until interrupted.")] = False,
    output: Annotated[Output, typer.Option("--output", "-o", help="table (for people), json or yaml.")] = Output.table,
) -> None:
    """Phase, revisions, steps, weights, replicas, analysis, conditions, history and recent events."""
    _run(_status(name, _target(ctx, namespace, kubeconfig, context), watch=watch, output=output))


# --- list ----------------------------------------------------------------------------------------------------------


async def _list(target: Target, *, all_namespaces: bool) -> None:
    async with _api(target) as api:
        items = await api.list_all(all_namespaces=all_namespaces)
    console = _console()
    if not items:
        where = "any namespace" if all_namespaces else f"namespace {api.namespace}"
        typer.echo(f"No modeldeployments found in {where}.", err=True)  # as kubectl says it: on stderr, exit 0
        return
    console.print(render_list([list_row(i) for i in items], all_namespaces=all_namespaces))


@app.command("list")
def list_(
    ctx: typer.Context,
    *,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="In every namespace.")] = False,
) -> None:
    """ModelDeployments: name, modes, strategy, stable, canary, weight, phase, age."""
    _run(_list(_target(ctx, namespace, kubeconfig, context), all_namespaces=all_namespaces))


# --- verbs ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """--wait/--no-wait, --timeout, --force."""

    wait: bool
    timeout: str
    force: bool


async def _deliver(
    verb_name: VerbName, target: Target, *, name: str, full: bool, how: Delivery, at: datetime | None = None
) -> int:
    verb = deliver.new_verb(verb_name, full=full, at=at)
    async with _api(target) as api:
        obj = await api.get(name)
        uid = obj.get("metadata", {}).get("uid")
        before = await deliver.ignored_event_names(api, name, uid) if how.wait else set()
        await deliver.send(api, name, verb, force=how.force, warn=lambda m: typer.echo(f"warning: {m}", err=True))
        where = f"modeldeployment {api.namespace}/{name}"
        if not how.wait:
            typer.echo(f"{deliver.describe(verb)} sent to {where}; the operator applies it on its next pass")
            return 0
        outcome = await deliver.wait_applied(
            api, name, verb, timeout_s=_seconds(how.timeout), timeout_text=how.timeout, before=before
        )
    console = _console()
    if outcome.ignored is not None:
        _fail(outcome.why_ignored())
        console.print(Text(f"{where} is unchanged; phase ").append_text(phase_text(outcome.phase)))
        return EXIT_NOT_APPLIED
    line = Text(f"{verb.name} applied to {where}; phase ")
    line.append_text(phase_text(outcome.phase))
    if outcome.message:
        line.append(f": {outcome.message}")
    console.print(line)
    return 0


def _verb(
    verb_name: VerbName, target: Target, *, name: str, full: bool, how: Delivery, at: datetime | None = None
) -> None:
    code = _run(_deliver(verb_name, target, name=name, full=full, how=how, at=at))
    if code:
        raise typer.Exit(code)


@app.command()
def promote(
    ctx: typer.Context,
    name: NameArg,
    *,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step and promote now.")] = False,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = "60s",
    force: ForceOpt = False,
) -> None:
    """Go on to the next step now (a pause step ends, a running step is skipped); --full: promote now."""
    target = _target(ctx, namespace, kubeconfig, context)
    _verb("promote", target, name=name, full=full, how=Delivery(wait, timeout, force))


def _scheduled_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date or time; e.g. 2026-12-01 or 2026-12-01T02:00:00Z") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@app.command()
def run(
    ctx: typer.Context,
    name: NameArg,
    *,
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="Score the data of this scheduled time (a backfill): 2026-12-01 or 2026-12-01T02:00:00Z (UTC "
            "unless an offset is given). Default: now.",
        ),
    ] = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = "60s",
    force: ForceOpt = False,
) -> None:
    """Batch: start a run now, like `kubectl create job --from=cronjob/...` (during a shadow or canary rollout,
    the candidate's run too)."""
    target = _target(ctx, namespace, kubeconfig, context)
    at = _scheduled_time(date)
    _verb("run", target, name=name, full=False, how=Delivery(wait, timeout, force), at=at)


def _simple_verb(verb_name: VerbName, summary: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        name: NameArg,
        *,
        namespace: NamespaceOpt = None,
        kubeconfig: KubeconfigOpt = None,
        context: ContextOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = "60s",
        force: ForceOpt = False,
    ) -> None:
        target = _target(ctx, namespace, kubeconfig, context)
        _verb(verb_name, target, name=name, full=False, how=Delivery(wait, timeout, force))

    command.__doc__ = summary
    command.__name__ = verb_name
    return command


SIMPLE_VERBS: dict[VerbName, str] = {
    "abort": "Stop the rollout: all traffic back to stable, phase Degraded; the candidate is held until retry.",
    "retry": "Roll out again the revision that was aborted or rolled back.",
    "pause": "Hold the rollout where it is (no step advances) until resume.",
    "resume": "Continue a rollout paused by a user or by inconclusive analysis.",
    "undo": "Roll back to the previous revision (during a rollout: stop it and return to stable).",
}
for _name, _summary in SIMPLE_VERBS.items():
    app.command(_name, help=_summary)(_simple_verb(_name, _summary))


def main() -> None:
    """Console script entry point (`kubectl-modelrollout`), named as kubectl users type it."""
    app(prog_name=PROG)


if __name__ == "__main__":
    main()
