"""Which gRPC code each data-plane error becomes: a caller's mistake is never INTERNAL."""

from __future__ import annotations

import grpc
import pytest

from modelserver import errors
from modelserver.grpc_api.status import code_for


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.MalformedRequest, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NonFiniteInput, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.PayloadTooLarge, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnsupportedMediaType, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.ModelNotFound, grpc.StatusCode.NOT_FOUND),
        (errors.ModelFailed, grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_maps_to_the_code_of_its_meaning(error: type[errors.ServingError], code: grpc.StatusCode) -> None:
    assert code_for(error("x")) == code


def test_every_caller_error_is_not_internal() -> None:
    """A new 4xx error class must not fall through to INTERNAL."""

    def subclasses(cls: type[errors.ServingError]) -> list[type[errors.ServingError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(errors.ServingError):
        if cls.status < 500:
            assert code_for(cls("x")) != grpc.StatusCode.INTERNAL, cls.__name__


def test_an_unlisted_status_still_follows_its_class() -> None:
    class Teapot(errors.ServingError):
        status = 418

    class Busy(errors.ServingError):
        status = 507

    assert code_for(Teapot("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_for(Busy("x")) == grpc.StatusCode.INTERNAL
