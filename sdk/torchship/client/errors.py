"""What a failed call raises: the server's own message, its HTTP status, and the URL asked."""

from __future__ import annotations

from ..errors import TorchshipError


class InferenceError(TorchshipError):
    """A request the server refused or failed; `message` is the server's `error` text."""

    def __init__(self, message: str, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message, status)
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.status} from {self.url})" if self.status is not None and self.url else ""
        return f"{self.message}{where}"


class InvalidRequest(InferenceError):
    """400: the inputs do not fit the model (shape, datatype, name)."""


class Unauthorized(InferenceError):
    """401/403: the bearer token is missing or wrong."""


class ModelNotFound(InferenceError):
    """404: no such model (or version) on this server."""


class ServerUnavailable(InferenceError):
    """503 (loading, draining) or no connection, still so after every retry."""


class ProtocolError(InferenceError):
    """The answer is not Open Inference Protocol v2."""


def for_status(status: int) -> type[InferenceError]:
    if status == 400 or status == 422:
        return InvalidRequest
    if status in (401, 403):
        return Unauthorized
    if status == 404:
        return ModelNotFound
    if status == 503:
        return ServerUnavailable
    return InferenceError
