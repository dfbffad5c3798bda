"""Status is honest about every declared mode: a condition each, Ready only when all are served, and never
Healthy while one is not (the engine still reads back the phase it wrote).

Every mode of the registry runs now; what is said of a declared mode this version does not run is tested with the
stream mode made not runnable (`stream_not_runnable`), as a future mode would be registered before it runs."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from testkit.manifests import load_example

from modelrollout.api.resource import ModelDeployment
from modelrollout.api.status import ModelDeploymentStatus
from modelrollout.modes import MODES
from modelrollout.modes.report import (
    MODES_NOT_SERVED,
    NOT_SUPPORTED,
    Readiness,
    mode_conditions,
    unserved,
    unserved_message,
    without_mode_report,
)
from modelrollout.modes.stream import StreamMode
from modelrollout.planning.reconcile import Beside
from tests.unit.modelrollout.planning.test_reconcile import T0, V1, md, observed, one_pass, serving, state

HYBRID = load_example("hybrid.yaml")["spec"]


def hybrid(status: ModelDeploymentStatus | None = None, **modes: Any) -> ModelDeployment:
    resource = md(status=status, replicas=4)  # online only: add the other modes of examples/hybrid.yaml
    wire = resource.model_dump(by_alias=True, exclude_none=True, mode="json")
    for mode in modes or ("batch", "stream"):
        wire["spec"][mode] = HYBRID[mode]
    return ModelDeployment.model_validate(wire)


def conditions(status: ModelDeploymentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_an_online_only_spec_is_ready_when_online_serves() -> None:
    p, _ = one_pass(md(status=serving(), replicas=4), observed(state(V1)))
    assert p.status.phase == "Healthy"
    assert conditions(p.status)["Ready"] == ("True", "Serving")
    assert conditions(p.status)["OnlineReady"] == ("True", "Serving")
    assert conditions(p.status)["Degraded"] == ("False", "AsExpected")
    assert not any(e.reason == "ModeNotServed" for e in p.events)


BATCH_READY = Beside(ready={"batch": Readiness("True", "Scheduled", "on schedule")})
STREAM_READY = Readiness("True", "Consuming", "revision r1 consumes; 0 records behind")
BOTH_READY = Beside(ready={"batch": BATCH_READY.ready["batch"], "stream": STREAM_READY})


@pytest.fixture
def stream_not_runnable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry with a stream mode this version would not run (the report's case for a mode not run yet)."""
    monkeypatch.setitem(MODES, "stream", dataclasses.replace(StreamMode(), runnable=False))


def test_a_hybrid_spec_with_stream_is_served_and_healthy() -> None:
    resource = hybrid(serving())
    assert unserved(resource.spec) == []
    assert unserved_message(resource.spec) is None
    p, _ = one_pass(resource, observed(state(V1)), beside=BOTH_READY)
    assert p.status.phase == "Healthy"
    assert p.status.modes == "online,batch,stream"
    said = conditions(p.status)
    assert said["Ready"] == ("True", "Serving")
    assert said["OnlineReady"] == ("True", "Serving")
    assert said["BatchReady"] == ("True", "Scheduled")
    assert said["StreamReady"] == ("True", "Consuming")
    assert said["Degraded"] == ("False", "AsExpected")
    assert not any(e.reason == "ModeNotServed" for e in p.events)
    assert without_mode_report(p.status) == p.status, "no report laid over a status whose modes are all served"


def test_stream_not_consuming_makes_ready_false_with_its_reason_while_online_stays_healthy() -> None:
    down = Readiness("False", "NotConsuming", "revision r1 does not consume: its consumers are not ready")
    beside = Beside(ready={"batch": BATCH_READY.ready["batch"], "stream": down})
    p, _ = one_pass(hybrid(serving()), observed(state(V1)), beside=beside)
    assert p.status.phase == "Healthy"  # online serves; the consumers' state is StreamReady's to say
    ready = next(c for c in p.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, ready.message) == ("False", "NotConsuming", down.message)
    assert conditions(p.status)["StreamReady"] == ("False", "NotConsuming")
    assert not any(e.reason == "ModeNotServed" for e in p.events)


@pytest.mark.usefixtures("stream_not_runnable")
def test_a_hybrid_spec_is_never_healthy_while_a_declared_mode_is_not_served() -> None:
    p, _ = one_pass(hybrid(serving()), observed(state(V1)), beside=BATCH_READY)
    assert p.status.phase == "Degraded"
    assert p.status.modes == "online,batch,stream"
    said = conditions(p.status)
    assert said["Ready"] == ("False", MODES_NOT_SERVED)
    assert said["OnlineReady"] == ("True", "Serving")
    assert said["BatchReady"] == ("True", "Scheduled")
    assert said["StreamReady"] == ("False", NOT_SUPPORTED)
    assert said["Degraded"] == ("True", MODES_NOT_SERVED)
    assert "spec.stream declared" in (p.status.message or "")
    assert "spec.batch" not in (p.status.message or "")
    [event] = [e for e in p.events if e.reason == "ModeNotServed"]
    assert event.type == "Warning"
    assert "nothing consumes the topic for spec.stream" in event.message
    # Online still serves: its objects are planned as for an online-only spec.
    assert {obj["kind"] for obj in p.grow} >= {"Deployment", "Service"}


def test_online_and_batch_both_served_is_ready() -> None:
    p, _ = one_pass(hybrid(serving(), batch=True), observed(state(V1)), beside=BATCH_READY)
    assert p.status.phase == "Healthy"
    said = conditions(p.status)
    assert said["Ready"] == ("True", "Serving")
    assert said["BatchReady"] == ("True", "Scheduled")


def test_batch_not_ready_makes_ready_false_with_its_reason() -> None:
    failed = Beside(ready={"batch": Readiness("False", "RunFailed", "the last run failed")})
    p, _ = one_pass(hybrid(serving(), batch=True), observed(state(V1)), beside=failed)
    assert conditions(p.status)["Ready"] == ("False", "RunFailed")
    assert p.status.phase == "Healthy"  # online serves; the batch run's failure is BatchReady's to say


@pytest.mark.usefixtures("stream_not_runnable")
def test_the_report_is_said_once_and_the_engine_reads_back_its_own_phase() -> None:
    first, _ = one_pass(hybrid(serving()), observed(state(V1)), beside=BATCH_READY)
    assert without_mode_report(first.status).phase == "Healthy"
    # The reconciler hands the engine the status without the report, and keeps the stored one as `prev`.
    stored = first.status
    again, _ = one_pass(hybrid(stored), observed(state(V1)), now=T0 + timedelta(seconds=10), beside=BATCH_READY)
    assert again.status.phase == "Degraded"
    assert not any(e.reason == "ModeNotServed" for e in again.events), "said again on the next pass"
    degraded = next(c for c in again.status.conditions if c.type == "Degraded")
    assert degraded.last_transition_time == T0
    assert again.status == stored.model_copy(update={"observed_generation": again.status.observed_generation})


@pytest.mark.usefixtures("stream_not_runnable")
def test_a_rollout_under_way_keeps_its_phase_and_says_the_modes_in_conditions() -> None:
    rolling = md("2", status=serving(), replicas=4)
    wire = rolling.model_dump(by_alias=True, exclude_none=True, mode="json")
    wire["spec"]["stream"] = HYBRID["stream"]
    p, _ = one_pass(ModelDeployment.model_validate(wire), observed(state(V1)))
    assert p.status.phase == "Progressing"
    assert conditions(p.status)["StreamReady"] == ("False", NOT_SUPPORTED)
    assert conditions(p.status)["Ready"] == ("False", MODES_NOT_SERVED)


@pytest.mark.usefixtures("stream_not_runnable")
def test_a_mode_that_is_not_online_names_what_nothing_does() -> None:
    spec = ModelDeployment.model_validate(load_example("stream.yaml") | {"metadata": {"name": "s"}}).spec
    message = unserved_message(spec)
    assert message == (
        "spec.stream declared, but this operator version runs online serving and batch scoring only: nothing "
        "consumes the topic for spec.stream"
    )
    said = mode_conditions(spec, ready={}, prev=[], generation=1, now=T0)
    assert [(c.type, c.status, c.reason) for c in said] == [
        ("Ready", "False", MODES_NOT_SERVED),
        ("StreamReady", "False", NOT_SUPPORTED),
    ]


def test_a_stream_only_spec_is_ready_when_its_consumers_consume() -> None:
    spec = ModelDeployment.model_validate(load_example("stream.yaml") | {"metadata": {"name": "s"}}).spec
    assert unserved_message(spec) is None
    said = mode_conditions(spec, ready={"stream": STREAM_READY}, prev=[], generation=1, now=T0)
    assert [(c.type, c.status, c.reason, c.message) for c in said] == [
        ("Ready", "True", "Consuming", STREAM_READY.message),
        ("StreamReady", "True", "Consuming", STREAM_READY.message),
    ]


def test_a_mode_taken_out_of_the_spec_takes_its_condition_with_it() -> None:
    first, _ = one_pass(hybrid(serving()), observed(state(V1)), beside=BOTH_READY)
    assert {"BatchReady", "StreamReady"} <= set(conditions(first.status))
    online_only, _ = one_pass(md(status=first.status, replicas=4), observed(state(V1)), now=T0 + timedelta(seconds=5))
    assert online_only.status.phase == "Healthy"
    assert set(conditions(online_only.status)) == {"Ready", "OnlineReady", "Progressing", "Degraded"}
    assert conditions(online_only.status)["Ready"] == ("True", "Serving")
    assert conditions(online_only.status)["Degraded"] == ("False", "AsExpected")
