"""Verb delivery against an in-memory stand-in for the API (resourceVersion checks, a watch, events) and a stand-in
operator that follows the contract: apply, set status.lastVerbId, remove the annotation, maybe warn VerbIgnored."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from modelrollout.cli import deliver
from modelrollout.cli.errors import EXIT_API, EXIT_NOT_APPLIED, CliError, Conflict
from modelrollout.cli.kube import NamedEvent
from modelrollout.cli.render import EventInfo
from modelrollout.rollout.verbs import VERB_ANNOTATION, Verb, verb_annotation

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def obj(annotations: dict[str, str] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "churn",
            "namespace": "prod",
            "uid": "u-1",
            "resourceVersion": "1",
            "annotations": annotations or {},
        },
        "status": {"phase": "Progressing", **status},
    }


Operator = Callable[["FakeApi"], None]


class FakeApi:
    """One ModelDeployment. `operator` runs once the watch has started (None: no operator answers)."""

    namespace = "prod"

    def __init__(self, body: dict[str, Any], *, operator: Operator | list[Operator] | None = None) -> None:
        self.body = body
        self.operator = [operator] if callable(operator) else list(operator or [])
        self.patches: list[dict[str, Any]] = []
        self.event_list: list[NamedEvent] = []
        self.before_patch: Callable[[FakeApi], None] | None = None  # someone else writes between our read and write
        self.deleted = False

    def bump(self) -> None:
        meta = self.body["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    async def get(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    async def annotate(self, name: str, annotations: dict[str, str | None], *, resource_version: str) -> dict[str, Any]:
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook(self)
        if resource_version != self.body["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        self.patches.append(annotations)
        self.body["metadata"]["annotations"].update(annotations)
        self.bump()
        return copy.deepcopy(self.body)

    async def events(self, name: str, *, uid: str | None = None) -> list[NamedEvent]:
        return list(self.event_list)

    async def watch(self, name: str) -> AsyncGenerator[dict[str, Any] | None, None]:
        yield copy.deepcopy(self.body)
        for step in self.operator:  # each step of the operator is one change seen by the watch
            step(self)
            yield None if self.deleted else copy.deepcopy(self.body)
        await asyncio.Event().wait()  # nothing else ever changes

    # what an operator does

    def warn(self, reason: str, message: str) -> None:
        info = EventInfo("Warning", reason, message, NOW)
        self.event_list.append(NamedEvent(f"churn.{len(self.event_list):x}", "u-1", info))


def applies(
    *, phase: str = "Paused", message: str = "paused by a user; resume to continue", ignore: str = ""
) -> Operator:
    """The operator's whole pass seen as one change."""

    def operator(api: FakeApi) -> None:
        writes_status(phase=phase, message=message)(api)
        records_and_removes(ignore)(api)

    return operator


def writes_status(*, phase: str = "Paused", message: str = "") -> Operator:
    def operator(api: FakeApi) -> None:
        verb = deliver.parse_verb_annotation(api.body["metadata"]["annotations"])
        assert verb is not None
        api.body["status"].update(lastVerbId=verb.id, phase=phase, message=message)
        api.bump()

    return operator


def records_and_removes(ignore: str = "") -> Operator:
    def operator(api: FakeApi) -> None:
        verb = deliver.parse_verb_annotation(api.body["metadata"]["annotations"])
        assert verb is not None
        if ignore:
            api.warn("VerbIgnored", f"{verb.name}: {ignore}")
        del api.body["metadata"]["annotations"][VERB_ANNOTATION]
        api.bump()

    return operator


@pytest.fixture(autouse=True)
def short_graces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deliver, "EVENT_GRACE_S", (0.0, 0.05))
    monkeypatch.setattr(deliver, "CONSUME_GRACE_S", 0.2)


# --- pure helpers -------------------------------------------------------------------------------------------------


def test_new_verbs_have_unique_ids() -> None:
    ids = {deliver.new_verb("pause").id for _ in range(100)}
    assert len(ids) == 100


def test_pending_is_an_annotated_verb_the_operator_has_not_applied() -> None:
    verb = Verb(name="pause", id="v1")
    assert deliver.pending_verb(obj()) is None
    assert deliver.pending_verb(obj(verb_annotation(verb))) == verb
    assert deliver.pending_verb(obj(verb_annotation(verb), lastVerbId="v0")) == verb
    # applied, the annotation just not removed yet
    assert deliver.pending_verb(obj(verb_annotation(verb), lastVerbId="v1")) is None
    # hand-written without an id: pending until the operator removes it
    assert deliver.pending_verb(obj({VERB_ANNOTATION: '{"name": "abort"}'}, lastVerbId="v1")) == Verb(name="abort")


def test_pending_with_no_status_at_all() -> None:
    body = obj(verb_annotation(Verb(name="pause", id="v1")))
    del body["status"]
    assert deliver.pending_verb(body) == Verb(name="pause", id="v1")


def test_is_applied_compares_ids() -> None:
    verb = Verb(name="undo", id="v9")
    assert deliver.is_applied(obj(lastVerbId="v9"), verb)
    assert not deliver.is_applied(obj(lastVerbId="v8"), verb)
    assert not deliver.is_applied(obj(), verb)
    assert not deliver.is_applied(obj(), Verb(name="undo"))


def test_messages_name_the_verb_the_object_and_the_way_out() -> None:
    verb = Verb(name="promote", full=True, id="abc")
    pending = deliver.pending_message(verb, "prod", "churn")
    assert "promote --full (id abc)" in pending
    assert "prod/churn" in pending
    assert "--force" in pending
    timeout = deliver.timeout_message(verb, "prod", "churn", "2s")
    assert "timed out after 2s" in timeout
    assert "the operator did not pick up promote --full (id abc)" in timeout
    assert "namespace prod" in timeout


# --- send ---------------------------------------------------------------------------------------------------------


async def test_send_writes_the_annotation_guarded_by_resource_version() -> None:
    api = FakeApi(obj())
    verb = Verb(name="promote", full=True, id="id-1")
    await deliver.send(api, "churn", verb, force=False)
    (patch,) = api.patches
    assert json.loads(patch[VERB_ANNOTATION]) == {"name": "promote", "full": True, "id": "id-1"}


async def test_send_refuses_while_another_verb_is_pending() -> None:
    waiting = Verb(name="pause", id="theirs")
    api = FakeApi(obj(verb_annotation(waiting)))
    with pytest.raises(CliError) as refused:
        await deliver.send(api, "churn", Verb(name="abort", id="mine"), force=False)
    assert refused.value.exit_code == EXIT_NOT_APPLIED
    assert "pause (id theirs) is still pending" in refused.value.message
    assert api.patches == []


async def test_force_replaces_a_pending_verb() -> None:
    api = FakeApi(obj(verb_annotation(Verb(name="pause", id="theirs"))))
    await deliver.send(api, "churn", Verb(name="abort", id="mine"), force=True)
    assert deliver.parse_verb_annotation(api.body["metadata"]["annotations"]) == Verb(name="abort", id="mine")


async def test_an_applied_but_uncleared_verb_is_simply_replaced() -> None:
    api = FakeApi(obj(verb_annotation(Verb(name="pause", id="old")), lastVerbId="old"))
    await deliver.send(api, "churn", Verb(name="resume", id="new"), force=False)
    assert len(api.patches) == 1


async def test_an_invalid_annotation_is_replaced_with_a_warning() -> None:
    api = FakeApi(obj({VERB_ANNOTATION: "promote please"}))
    warnings: list[str] = []
    await deliver.send(api, "churn", Verb(name="promote", id="x"), force=False, warn=warnings.append)
    assert len(api.patches) == 1
    (warning,) = warnings
    assert "replacing an invalid verb annotation" in warning
    assert "promote please" in warning


async def test_a_verb_that_arrives_between_read_and_write_is_not_overwritten() -> None:
    api = FakeApi(obj())

    def someone_else(api: FakeApi) -> None:
        api.body["metadata"]["annotations"].update(verb_annotation(Verb(name="undo", id="theirs")))
        api.bump()

    api.before_patch = someone_else
    with pytest.raises(CliError, match=r"undo \(id theirs\) is still pending"):
        await deliver.send(api, "churn", Verb(name="promote", id="mine"), force=False)
    assert api.patches == []


async def test_an_unrelated_change_between_read_and_write_is_retried() -> None:
    api = FakeApi(obj())
    api.before_patch = lambda api: api.bump()
    await deliver.send(api, "churn", Verb(name="promote", id="mine"), force=False)
    assert len(api.patches) == 1


# --- wait_applied -------------------------------------------------------------------------------------------------


async def _send_and_wait(api: FakeApi, verb: Verb, timeout_s: float = 2) -> deliver.Outcome:
    before = await deliver.ignored_event_names(api, "churn", "u-1")
    await deliver.send(api, "churn", verb, force=False)
    return await deliver.wait_applied(
        api,
        "churn",
        verb,
        timeout_s=timeout_s,
        timeout_text=f"{timeout_s:g}s",
        before=before,
    )


async def test_applied_reports_the_resulting_phase_and_message() -> None:
    api = FakeApi(obj(), operator=applies())
    outcome = await _send_and_wait(api, Verb(name="pause", id="p1"))
    assert (outcome.phase, outcome.message, outcome.ignored) == ("Paused", "paused by a user; resume to continue", None)
    assert outcome.summary("prod", "churn") == (
        "pause applied to modeldeployment prod/churn; phase Paused: paused by a user; resume to continue"
    )


async def test_ignored_reports_the_operators_warning() -> None:
    api = FakeApi(obj(), operator=applies(phase="Healthy", message="", ignore="no rollout in progress"))
    outcome = await _send_and_wait(api, Verb(name="promote", id="p2"))
    assert outcome.ignored is not None
    assert outcome.why_ignored() == "the operator ignored promote: no rollout in progress"


async def test_the_warning_recorded_after_the_status_write_is_found() -> None:
    # The operator writes status (lastVerbId) first, then records its events, then removes the annotation.
    api = FakeApi(obj(), operator=[writes_status(phase="Healthy"), records_and_removes("no rollout in progress")])
    outcome = await _send_and_wait(api, Verb(name="abort", id="p5"))
    assert outcome.ignored is not None
    assert outcome.why_ignored() == "the operator ignored abort: no rollout in progress"


async def test_an_operator_that_never_removes_the_annotation_still_counts_as_applied() -> None:
    api = FakeApi(obj(), operator=[writes_status(phase="Paused", message="paused by a user")])
    outcome = await _send_and_wait(api, Verb(name="pause", id="p6"), timeout_s=30)
    assert (outcome.phase, outcome.ignored) == ("Paused", None)


async def test_an_older_warning_is_not_taken_for_this_verbs() -> None:
    api = FakeApi(obj(), operator=applies())
    api.warn("VerbIgnored", "pause: the rollout is not paused")  # from an earlier pause
    outcome = await _send_and_wait(api, Verb(name="pause", id="p3"))
    assert outcome.ignored is None


async def test_a_warning_about_another_verb_is_not_taken_for_this_one() -> None:
    def operator(api: FakeApi) -> None:
        applies()(api)
        api.warn("VerbIgnored", "resume: the rollout is not paused")

    api = FakeApi(obj(), operator=operator)
    assert (await _send_and_wait(api, Verb(name="pause", id="p4"))).ignored is None


async def test_no_operator_times_out_with_exit_1() -> None:
    api = FakeApi(obj())
    with pytest.raises(CliError) as failed:
        await _send_and_wait(api, Verb(name="abort", id="a1"), timeout_s=0.2)
    assert failed.value.exit_code == EXIT_NOT_APPLIED
    assert "timed out after 0.2s: the operator did not pick up abort (id a1)" in failed.value.message
    # the verb stays for the operator to apply later
    assert deliver.pending_verb(api.body) == Verb(name="abort", id="a1")


async def test_deleted_while_waiting_is_exit_3() -> None:
    def delete(api: FakeApi) -> None:
        api.deleted = True

    with pytest.raises(CliError) as failed:
        await _send_and_wait(FakeApi(obj(), operator=delete), Verb(name="abort", id="a2"))
    assert failed.value.exit_code == EXIT_API
    assert "prod/churn was deleted" in failed.value.message


async def test_replaced_by_someone_elses_verb_is_exit_1() -> None:
    def replace(api: FakeApi) -> None:
        api.body["metadata"]["annotations"].update(verb_annotation(Verb(name="undo", id="theirs")))
        api.bump()

    with pytest.raises(CliError) as failed:
        await _send_and_wait(FakeApi(obj(), operator=replace), Verb(name="pause", id="mine"))
    assert failed.value.exit_code == EXIT_NOT_APPLIED
    assert "pause (id mine) was replaced by undo (id theirs)" in failed.value.message
