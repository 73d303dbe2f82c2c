"""Errors that become HTTP answers with an `{"error": "..."}` body. Anything else that escapes a
request is a bug and answers 500."""

from __future__ import annotations


class InferenceError(Exception):
    """A request that cannot be served as sent; `status` is its HTTP status (400 by default)."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(InferenceError):
    status = 404


class MethodNotAllowed(InferenceError):
    """`allow`: the methods the path takes, for the `Allow` header."""

    status = 405

    def __init__(self, method: str, allow: str) -> None:
        super().__init__(f"{method} is not allowed here ({allow})")
        self.allow = allow


class Unauthorized(InferenceError):
    status = 401


class BodyTooLarge(InferenceError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")


class Unavailable(InferenceError):
    """The model is not loaded (yet): a client may retry elsewhere."""

    status = 503


class ModelFailure(InferenceError):
    """The model raised while running valid-looking input: the model's own words, as a 500."""

    status = 500
