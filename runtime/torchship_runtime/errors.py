"""Errors the server turns into HTTP answers with `{"error": "..."}` bodies."""

from __future__ import annotations


class InferenceError(Exception):
    """A request that cannot be served as sent; `status` is the HTTP status (4xx by default)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
