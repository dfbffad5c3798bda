"""Errors a caller can cause or see; each carries its HTTP status and the metric `reason` it counts under."""

from __future__ import annotations

from typing import ClassVar


class ServingError(Exception):
    """`status`: what the transport answers; `reason`: the label of modelserver_inference_errors_total."""

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequest(ServingError):
    reason = "malformed"


class InvalidInput(ServingError):
    reason = "invalid_input"


class NonFiniteInput(ServingError):
    reason = "non_finite"


class PayloadTooLarge(ServingError):
    status = 413
    reason = "too_large"


class UnsupportedMediaType(ServingError):
    status = 415
    reason = "unsupported_media"


class ClientClosed(ServingError):
    """The client went away before its request body arrived: nobody is left to answer (nginx's 499)."""

    status = 499
    reason = "client_closed"


class ModelNotFound(ServingError):
    status = 404
    reason = "not_found"


class ModelUnloaded(ServingError):
    """The model was unloaded or replaced while the request was on its way to it: asking again reaches what is
    served now (the new copy, or a 404)."""

    status = 503
    reason = "unloaded"


class ModelFailed(ServingError):
    """The model raised on input that passed validation: a fault of the model, not of the caller."""

    status = 500
    reason = "model_error"


class ModelLoadError(Exception):
    """The model could not be fetched, verified or loaded; the server must not start."""
