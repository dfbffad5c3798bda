"""The reconciler hands each decided event that is a notification to the notifier, named as the event, with the
decision's status; nothing else (no await, no Secret read) happens for it in the pass."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from testkit.fake_kube import FakeKube

from modelrollout.api.notifications import NotificationsSpec
from modelrollout.notify.bodies import Notification
from modelrollout.notify.sender import Notifier
from modelrollout.reconciler import Reconciler
from modelrollout.settings import NotificationSettings, OperatorSettings, PlanningSettings
from tests.unit.modelrollout.test_reconciler import NAME, NS, Clock, churn, pass_, stored


class Recording(Notifier):
    def __init__(self) -> None:
        super().__init__(NotificationSettings(), read_secret=self._never, post_warning=self._never)
        self.submitted: list[tuple[Notification, NotificationsSpec | None]] = []

    @staticmethod
    async def _never(*_: Any) -> Any:
        raise AssertionError("the pass must not read Secrets or post for notifications")

    def submit(self, notification: Notification, spec: NotificationsSpec | None, involved: Mapping[str, Any]) -> int:
        assert involved["metadata"]["name"] == NAME
        self.submitted.append((notification, spec))
        return 1


@pytest.fixture
async def notifier() -> AsyncIterator[Recording]:
    recording = Recording()
    yield recording
    await recording.close()


@pytest.fixture
async def reconciler(notifier: Recording) -> AsyncIterator[tuple[Reconciler, FakeKube]]:
    kube = FakeKube()
    settings = OperatorSettings(planning=PlanningSettings(default_image="registry.example/model-server:1"))
    reconciler = Reconciler(kube, settings, clock=Clock(), notifier=notifier)  # type: ignore[arg-type]
    yield reconciler, kube
    await reconciler.close()


async def test_decided_events_are_handed_over_named_as_posted_with_the_decisions_status(
    reconciler: tuple[Reconciler, FakeKube], notifier: Recording
) -> None:
    rec, kube = reconciler
    churn(kube)
    stored(kube)["spec"]["notifications"] = {"webhooks": [{"name": "ci", "url": "http://ci.test/"}]}
    await pass_(rec, kube)
    await pass_(rec, kube)
    told = [(n.reason, n.kinds, n.phase) for n, _ in notifier.submitted]
    assert told == [("RolloutStarted", ["started"], "Promoting"), ("Promoted", ["promoted"], "Healthy")]
    assert [n.id for n, _ in notifier.submitted] == [f"{NAME}.{key}" for key in sorted(kube.event_keys)]
    promoted, spec = notifier.submitted[-1]
    assert promoted.stable is not None
    assert promoted.model_deployment.namespace == NS
    assert spec is not None
    assert [w.name for w in spec.webhooks] == ["ci"]


async def test_a_pass_done_again_hands_the_same_id_over_again_for_the_notifier_to_drop(
    reconciler: tuple[Reconciler, FakeKube], notifier: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, kube = reconciler
    churn(kube)
    kube.ready = False
    record = kube.apply_status

    async def lost(*_: Any, **__: Any) -> dict[str, Any]:
        raise ConnectionResetError("the process died here")

    monkeypatch.setattr(kube, "apply_status", lost)
    await pass_(rec, kube)
    monkeypatch.setattr(kube, "apply_status", record)
    await pass_(rec, kube)
    ids = [n.id for n, _ in notifier.submitted]
    assert len(ids) == 2
    assert ids[0] == ids[1]
    assert [n.reason for n, _ in notifier.submitted] == ["RolloutStarted"] * 2
