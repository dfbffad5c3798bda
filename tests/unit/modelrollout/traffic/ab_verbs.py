"""The A/B verb sequence both mesh routers must survive: every verb leaves the routing it names, and repeating it
writes nothing (the operator repeats verbs after a crash)."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelrollout.traffic.base import HeaderMatch, StickyBy
from modelrollout.traffic.gateway_api import GatewayAPIRouter
from modelrollout.traffic.istio import IstioRouter
from modelrollout.traffic.patching import Routing

BY_COOKIE = StickyBy(cookie="uid")


async def check_ab_verbs(
    router: GatewayAPIRouter | IstioRouter,
    *,
    by_user: StickyBy,
    set_as: StickyBy,
    routing: Callable[[], Routing],
    stored: Callable[[], Any],
    writes: Callable[[], int],
) -> None:
    """`by_user` is the header assignment as the object reads back, `set_as` how it is asked for (Istio keeps
    header names in lower case); `routing()` reads the object, `stored()` is its list of rules or routes."""

    async def twice(verb: Callable[[], Awaitable[object]], expected: Routing) -> None:
        await verb()
        assert routing() == expected
        before, rules = writes(), copy.deepcopy(stored())
        await verb()
        assert writes() == before, "repeating a verb writes nothing"
        assert stored() == rules
        assert await router.verify()

    ab = Routing(stable=50, canary=50, sticky=by_user)
    await twice(lambda: router.set_weights(50, 50), Routing(stable=50, canary=50))
    await twice(lambda: router.set_sticky(set_as), ab)
    await twice(lambda: router.converge(stable=50, canary=50, mirror=0, sticky=by_user), ab)
    await twice(lambda: router.set_weights(80, 20), Routing(stable=80, canary=20, sticky=by_user))
    await twice(lambda: router.set_mirror(10), Routing(stable=80, canary=20, mirror=10, sticky=by_user))
    await twice(lambda: router.set_sticky(BY_COOKIE), Routing(stable=80, canary=20, mirror=10, sticky=BY_COOKIE))
    with pytest.raises(ValueError, match="cannot be set together"):
        await router.set_header_route(HeaderMatch(header="x-canary", exact="yes"))
    await twice(lambda: router.set_header_route(None), Routing(stable=80, canary=20, mirror=10, sticky=BY_COOKIE))
    await twice(lambda: router.set_sticky(None), Routing(stable=80, canary=20, mirror=10))
    await twice(
        lambda: router.converge(stable=70, canary=30, mirror=0, sticky=by_user), Routing(70, 30, sticky=by_user)
    )
    await twice(router.reset, Routing())
