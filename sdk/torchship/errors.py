"""The base of what the SDK raises, in both of its clients: the other side's own words and the
HTTP status they came with."""

from __future__ import annotations


class TorchshipError(Exception):
    """A call the other side refused or failed: `message` in its words, `status` its HTTP
    status (None when no answer came)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
