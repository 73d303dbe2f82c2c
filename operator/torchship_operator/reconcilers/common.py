"""What the sub-reconciles share: the observed world, the outcome of a pass that each adds
its writes and Events to, and how an apply or a scale is noted there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import render
from ..kube import Applied
from ..vocabulary import Event, EventType


@dataclass
class Observed:
    """The world as the watch caches saw it for one ModelService."""

    body: Mapping[str, Any]
    deployments: Sequence[Mapping[str, Any]]
    services: Sequence[Mapping[str, Any]]
    hpas: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]


@dataclass
class Outcome:
    ready: bool
    requeue_after: float | None = None
    failed: bool = False  # a write was refused: back off before the next pass
    writes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def emit(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def poll(self, seconds: float) -> None:
        """Come back within `seconds` at the latest (for what no watch tells)."""
        self.requeue_after = min(self.requeue_after or seconds, seconds)


def owner_of(body: Mapping[str, Any]) -> render.Owner:
    meta = body["metadata"]
    return render.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def note_apply(outcome: Outcome, kind: str, name: str, applied: Applied) -> None:
    if not applied:
        return
    outcome.writes.append(f"{kind.lower()}/{name}")
    if applied is Applied.CORRECTED:
        outcome.emit(
            "Warning",
            "DriftCorrected",
            f"{kind} {name} was changed outside torchship; its managed fields were restored",
        )


def note_scale(outcome: Outcome, revision: str, before: int | None, after: int) -> None:
    outcome.emit("Normal", "Scaled", f"scaled revision {revision} from {before} to {after}")


def first(items: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return items[0] if items else None


def named(items: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((i for i in items if i["metadata"]["name"] == name), None)
