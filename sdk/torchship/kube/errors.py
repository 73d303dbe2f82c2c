"""What the ModelService client raises; each carries the API server's or the operator's words."""

from __future__ import annotations

from ..errors import TorchshipError


class KubeError(TorchshipError):
    """A request the API server refused; `message` is its Status message, `reason` its
    CamelCase reason."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message, status)
        self.reason = reason


class NotFound(KubeError):
    """No such ModelService (or revision)."""


class Invalid(KubeError):
    """The API server rejected the object (schema or validation rule); `message` says why."""


class Conflict(KubeError):
    """Another field manager owns a field this apply changes, or the object moved on."""


class NotReady(TimeoutError):
    """wait_ready gave up: `reason` and `message` are those of the Ready condition then (of
    Progressing when every replica serves but the rollout is not over)."""

    def __init__(self, name: str, reason: str, message: str, waited: float | None) -> None:
        after = f" after {waited:g}s" if waited is not None else ""
        super().__init__(f"{name} is not ready{after}: {reason}: {message}".rstrip(": "))
        self.name = name
        self.reason = reason
        self.message = message


class NothingToDo(KubeError):
    """The ModelService is not in a state the command applies to (nothing awaits promotion,
    no rollout to abort, no such revision to roll back to)."""
