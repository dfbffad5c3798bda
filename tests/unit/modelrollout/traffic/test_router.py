from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from pydantic import ValidationError
from testkit.vectors import FULL

from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.router import (
    ConfigMapRouter,
    FallbackModel,
    GraphRouting,
    RouterConfig,
    RouterConfigError,
    Versions,
    parse_configmap_data,
    to_configmap_data,
)
from modelrollout_contract.router import CONFIG_KEY
from modelrollout_contract.router_v2 import BackendV2, Ensemble, Fallback, parse_any

STABLE_URL = "http://churn-stable.prod.svc:80"
CANARY_URL = "http://churn-canary.prod.svc:80"
VERSIONS = {"stable": "1", "canary": "2"}
SHARED_VECTOR = FULL


class Store:
    """One ConfigMap's data, as the injected read/write callables see it."""

    def __init__(self, data: dict[str, str] | None = None) -> None:
        self.data = data
        self.writes = 0

    async def write(self, data: dict[str, str]) -> None:
        self.data = dict(data)
        self.writes += 1

    async def read(self) -> Mapping[str, str] | None:
        return self.data


def router(store: Store, fallback: FallbackModel | None = None, graph: GraphRouting | None = None) -> ConfigMapRouter:
    return ConfigMapRouter(
        route="churn",
        stable_url=STABLE_URL,
        canary_url=CANARY_URL,
        versions=Versions.model_validate(VERSIONS),
        write=store.write,
        read=store.read,
        timeout_seconds=2.5,
        retry_on_stable=True,
        fallback=fallback,
        graph=graph,
    )


def stored(store: Store) -> RouterConfig:
    assert store.data is not None
    return parse_configmap_data(store.data)


def written(store: Store) -> dict[str, object]:
    assert store.data is not None
    body: dict[str, object] = json.loads(store.data[CONFIG_KEY])
    return body


def test_the_document_format_is_versioned_camel_case_json() -> None:
    config = RouterConfig.model_validate(
        {
            "route": "churn",
            "backends": {"stable": STABLE_URL, "canary": CANARY_URL},
            "versions": VERSIONS,
            "weights": {"stable": 90, "canary": 10},
            "mirrorPercent": 5,
            "headerRoute": {"header": "x-canary", "exact": "yes"},
            "stickyBy": {"header": "x-user-id"},
            "timeoutSeconds": 2.5,
            "retryOnStable": True,
        }
    )
    data = to_configmap_data(config)
    assert list(data) == [CONFIG_KEY]
    # The shared test vector is exactly what we write: the router's own parser is tested against the same file.
    assert json.loads(data[CONFIG_KEY]) == json.loads(SHARED_VECTOR.read_text())
    assert parse_configmap_data(data) == config


async def test_converge_rewrites_roles_and_settings_only_when_they_differ() -> None:
    store = Store()
    await router(store).set_weights(70, 30)
    await router(store).set_header_route(HeaderMatch(header="x-canary"))
    assert not await router(store).converge(stable=70, canary=30, mirror=0)
    assert store.writes == 2
    promoted = ConfigMapRouter(
        route="churn",
        stable_url=STABLE_URL,
        canary_url=CANARY_URL,
        versions=Versions(stable="2", canary="2"),  # no rollout: the canary Service selects stable's pods
        write=store.write,
        read=store.read,
    )
    assert await promoted.converge(stable=100, canary=0, mirror=0)
    config = stored(store)
    assert (config.weights.canary, config.versions.stable, config.versions.canary) == (0, "2", "2")
    assert (config.timeout_seconds, config.retry_on_stable) == (10.0, False)
    assert config.header_route == HeaderMatch(header="x-canary")
    store.data = None  # deleted by hand: written again from what status says
    assert await promoted.converge(stable=90, canary=10, mirror=5)
    assert (stored(store).weights.canary, stored(store).mirror_percent) == (10, 5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "has no router.json key"),
        ({CONFIG_KEY: "{not json"}, "is not JSON"),
        ({CONFIG_KEY: '{"schemaVersion": 3}'}, "has schemaVersion 3; this reader knows 1 and 2"),
        ({CONFIG_KEY: '{"schemaVersion": 2}'}, "is invalid"),
        ({CONFIG_KEY: "[]"}, "is not a JSON object"),
        ({CONFIG_KEY: '{"schemaVersion": 1, "route": "x"}'}, "is invalid"),
        (
            {
                CONFIG_KEY: json.dumps(
                    {
                        "schemaVersion": 1,
                        "route": "x",
                        "backends": {"stable": STABLE_URL},
                        "versions": {"stable": "1"},
                        "weights": {"stable": 80, "canary": 20},
                    }
                )
            },
            "has no backend",
        ),
    ],
)
def test_unusable_documents_are_refused_with_the_reason(data: dict[str, str], message: str) -> None:
    with pytest.raises(RouterConfigError, match=message):
        parse_configmap_data(data)


def test_a_canary_backend_comes_with_its_version() -> None:
    with pytest.raises(ValidationError, match="set together"):
        RouterConfig.model_validate(
            {
                "route": "x",
                "backends": {"stable": STABLE_URL, "canary": CANARY_URL},
                "versions": {"stable": "1"},
            }
        )


def test_weights_must_add_up_to_100() -> None:
    with pytest.raises(ValidationError, match="add up to 100"):
        RouterConfig.model_validate(
            {
                "route": "x",
                "backends": {"stable": STABLE_URL},
                "versions": {"stable": "1"},
                "weights": {"stable": 50, "canary": 10},
            }
        )


async def test_each_change_keeps_the_others() -> None:
    store = Store()
    r = router(store)
    await r.set_weights(90, 10)
    await r.set_mirror(20)
    await r.set_header_route(HeaderMatch(header="x-canary", regex="^(yes|true)$"))
    config = stored(store)
    assert (config.weights.stable, config.weights.canary) == (90, 10)
    assert config.mirror_percent == 20
    assert config.header_route == HeaderMatch(header="x-canary", regex="^(yes|true)$")
    assert config.backends.canary == CANARY_URL
    assert store.writes == 3
    assert await r.verify()


async def test_a_restarted_router_continues_from_the_stored_document() -> None:
    store = Store()
    await router(store).set_weights(70, 30)
    await router(store).set_mirror(5)  # a new instance, as after an operator restart
    config = stored(store)
    assert (config.weights.canary, config.mirror_percent) == (30, 5)


async def test_reset_sends_everything_to_stable() -> None:
    store = Store()
    r = router(store)
    await r.set_weights(0, 100)
    await r.set_mirror(50)
    await r.set_header_route(HeaderMatch(header="x-canary"))
    await r.reset()
    config = stored(store)
    assert (config.weights.stable, config.weights.canary, config.mirror_percent) == (100, 0, 0)
    assert config.header_route is None


async def test_an_unreadable_document_is_replaced_by_a_safe_one() -> None:
    store = Store({CONFIG_KEY: "garbage"})
    r = router(store)
    assert not await r.verify()
    await r.set_mirror(10)
    config = stored(store)
    assert (config.weights.stable, config.mirror_percent) == (100, 10)


async def test_verify_notices_a_document_changed_behind_our_back() -> None:
    store = Store()
    r = router(store)
    await r.set_weights(90, 10)
    assert await r.verify()
    await router(store).set_weights(50, 50)  # someone else
    assert not await r.verify()
    store.data = None
    assert not await r.verify()


async def test_before_any_write_verify_checks_the_stored_document_is_readable() -> None:
    store = Store()
    await router(store).set_weights(80, 20)
    assert await router(store).verify()


@pytest.mark.parametrize(("stable", "canary"), [(90, 20), (-10, 110)])
async def test_invalid_weights_raise_before_writing(stable: int, canary: int) -> None:
    store = Store()
    with pytest.raises(ValueError, match="add up to 100"):
        await router(store).set_weights(stable, canary)
    assert store.writes == 0


async def test_invalid_mirror_raises_before_writing() -> None:
    store = Store()
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        await router(store).set_mirror(101)
    assert store.writes == 0


def test_a_header_match_sets_at_most_one_way_to_match() -> None:
    with pytest.raises(ValidationError, match="at most one of exact or regex"):
        HeaderMatch(header="x", exact="a", regex="b")
    assert HeaderMatch(header="x").exact is None


async def test_set_sticky_keeps_the_rest_and_none_removes_it() -> None:
    store = Store()
    r = router(store)
    await r.set_weights(70, 30)
    await r.set_header_route(HeaderMatch(header="x-canary"))
    await r.set_sticky(StickyBy(cookie="uid"))
    config = stored(store)
    assert config.sticky_by == StickyBy(cookie="uid")
    assert (config.weights.canary, config.header_route) == (30, HeaderMatch(header="x-canary"))
    assert written(store)["stickyBy"] == {"cookie": "uid"}  # camelCase, only the key that is set
    assert await r.verify()
    await r.set_sticky(StickyBy(header="x-user-id"))
    assert stored(store).sticky_by == StickyBy(header="x-user-id")
    await r.set_sticky(None)
    assert stored(store).sticky_by is None
    assert "stickyBy" not in written(store)
    assert stored(store).weights.canary == 30


async def test_reset_clears_the_sticky_assignment() -> None:
    store = Store()
    r = router(store)
    await r.set_weights(50, 50)
    await r.set_sticky(StickyBy(header="x-user-id"))
    await r.reset()
    config = stored(store)
    assert config.sticky_by is None
    assert (config.weights.stable, config.weights.canary) == (100, 0)


async def test_converge_makes_the_sticky_assignment_exactly_what_it_is_given() -> None:
    store = Store()
    r = router(store)
    await r.set_header_route(HeaderMatch(header="x-canary"))
    by = StickyBy(header="x-user-id")
    assert await r.converge(stable=70, canary=30, mirror=0, sticky=by)
    assert stored(store).sticky_by == by
    assert stored(store).header_route == HeaderMatch(header="x-canary")  # kept
    writes = store.writes
    assert not await r.converge(stable=70, canary=30, mirror=0, sticky=by)
    assert store.writes == writes
    # Another key: replaced, not merged.
    assert await r.converge(stable=70, canary=30, mirror=0, sticky=StickyBy(cookie="uid"))
    assert stored(store).sticky_by == StickyBy(cookie="uid")
    # Without `sticky` (the default None) converge removes an assignment it finds, even one set by hand.
    assert await r.converge(stable=70, canary=30, mirror=0)
    assert stored(store).sticky_by is None
    assert stored(store).header_route == HeaderMatch(header="x-canary")
    assert not await r.converge(stable=70, canary=30, mirror=0, sticky=None)
    await r.set_sticky(by)
    assert await r.converge(stable=70, canary=30, mirror=0)
    assert stored(store).sticky_by is None


@pytest.mark.parametrize(
    ("sticky", "message"),
    [
        ({"header": "x-user-id", "cookie": "uid"}, "exactly one of header or cookie"),
        ({}, "exactly one of header or cookie"),
        ({"header": ""}, "at least 1 character"),
        ({"cookie": "user id"}, "not a cookie name"),
        ({"cookie": "uid;x"}, "not a cookie name"),
        ({"query": "uid"}, "query"),
    ],
)
def test_an_invalid_sticky_by_is_refused_with_the_reason(sticky: dict[str, str], message: str) -> None:
    document = json.loads(SHARED_VECTOR.read_text()) | {"stickyBy": sticky}
    with pytest.raises(RouterConfigError, match=message):
        parse_configmap_data({CONFIG_KEY: json.dumps(document)})


FALLBACK_URL = "http://churn-fallback.prod.svc:80"


async def test_a_fallback_model_is_written_as_a_version_2_document_with_its_chains() -> None:
    store = Store()
    rules = FallbackModel(url=FALLBACK_URL, version="rules-1", budget_seconds=0.2)
    writer = router(store, rules)
    await writer.set_weights(80, 20)
    await writer.set_header_route(HeaderMatch(header="x-canary"))
    document = parse_any(store.data[CONFIG_KEY])  # type: ignore[index]
    assert document.backends["fallback"] == BackendV2(url=FALLBACK_URL, version="rules-1")
    assert document.fallbacks == {
        "stable": Fallback(to=["fallback"], latency_budget_seconds=0.2),
        # retryOnStable: the canary falls back on stable first, then on the fallback model.
        "canary": Fallback(to=["stable", "fallback"], latency_budget_seconds=0.2),
    }
    assert [(s.backend, s.weight) for s in document.split] == [("canary", 20), ("stable", 80)]
    # The rollout's state reads back as it was set.
    state = stored(store)
    assert (state.weights.stable, state.weights.canary, state.retry_on_stable) == (80, 20, True)
    assert state.header_route == HeaderMatch(header="x-canary")
    assert await writer.verify()


async def test_a_fallback_added_changed_or_removed_is_converged_without_touching_the_rollout() -> None:
    store = Store()
    await router(store, None).set_weights(90, 10)
    assert written(store)["schemaVersion"] == 1
    with_rules = router(store, FallbackModel(url=FALLBACK_URL, version="rules-1"))
    assert await with_rules.converge(stable=90, canary=10, mirror=0)  # added: same routing, a new document
    assert parse_any(store.data[CONFIG_KEY]).fallbacks["stable"].to == ["fallback"]  # type: ignore[index]
    assert not await with_rules.converge(stable=90, canary=10, mirror=0)
    newer = router(store, FallbackModel(url=FALLBACK_URL, version="rules-2", budget_seconds=1.0))
    assert await newer.converge(stable=90, canary=10, mirror=0)
    assert parse_any(store.data[CONFIG_KEY]).backends["fallback"].version == "rules-2"  # type: ignore[index]
    assert await router(store, None).converge(stable=90, canary=10, mirror=0)  # removed
    assert written(store)["schemaVersion"] == 1
    assert (stored(store).weights.stable, stored(store).weights.canary) == (90, 10)


def trio(b_version: str) -> GraphRouting:
    members = {"b": BackendV2(url="http://churn-b.prod.svc:80", version=b_version),
               "c": BackendV2(url="http://churn-c.prod.svc:80", version="c1")}  # fmt: skip
    return GraphRouting(members=members, ensemble=Ensemble(members=["self", "b", "c"], quorum=2))


async def test_a_graph_is_written_around_the_rollout_and_a_members_new_version_rewrites_it() -> None:
    store = Store()
    rules = FallbackModel(url=FALLBACK_URL, version="rules-1")
    writer = router(store, rules, trio("b1"))
    await writer.set_weights(70, 30)
    document = parse_any(store.data[CONFIG_KEY])  # type: ignore[index]
    assert [(s.backend, s.weight) for s in document.split] == [("ensemble-canary", 30), ("ensemble", 70)]
    assert document.fallbacks["ensemble-canary"].to == ["ensemble", "fallback"]  # retryOnStable, then the model
    assert (stored(store).weights.stable, stored(store).weights.canary) == (70, 30)
    assert not await writer.converge(stable=70, canary=30, mirror=0)
    # The member promoted its version b2: same rollout, a new document.
    promoted = router(store, rules, trio("b2"))
    assert await promoted.converge(stable=70, canary=30, mirror=0)
    assert parse_any(store.data[CONFIG_KEY]).backends["b"].version == "b2"  # type: ignore[index]
    assert await router(store, None, None).converge(stable=70, canary=30, mirror=0)  # graph and fallback removed
    assert written(store)["schemaVersion"] == 1
