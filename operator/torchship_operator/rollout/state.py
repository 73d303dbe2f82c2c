"""What the state machine remembers between passes, stored in status.rollout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

from ..analysis import StepAnalysis
from ..revisions import parse_time

Phase = Literal["Stable", "Progressing", "Paused", "Aborted"]


@dataclass(frozen=True)
class RolloutState:
    """What the state machine remembers between passes, stored in status.rollout."""

    stable_revision: str | None = None  # the last revision that was fully available
    target_revision: str | None = None  # the revision being rolled out (or that was aborted)
    phase: Phase = "Stable"
    step: int = 0  # Canary: index of the current step; len(steps) = taking all the traffic
    started_at: float | None = None  # the rollout began
    paused_at: float | None = None  # the current step was reached: its pause counts from here
    progress_at: float | None = None  # last progress: the deadline counts from here
    target_ready: int = 0  # most ready pods the target has had; more is progress
    aborted_revision: str | None = None
    reason: str | None = None  # why it aborted (or stalled), CamelCase
    message: str | None = None
    making_room: str | None = None  # which old pods give up their GPU for which new ones
    analysis: tuple[StepAnalysis, ...] = ()  # the measurements of this rollout's steps

    def to_dict(self) -> dict[str, Any]:
        """camelCase keys; times as RFC 3339 (metav1.MicroTime); unset fields left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            if f.name == "analysis":
                value = [a.to_dict(format_time) for a in value]
            elif f.name in _TIMES:
                value = format_time(value)
            out[_WIRE[f.name]] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RolloutState | None:
        if not data:
            return None
        values: dict[str, Any] = {}
        for name, wire in _WIRE.items():
            value = data.get(wire)
            if value is None:
                continue
            if name in _TIMES:
                value = parse_time(value)
            elif name == "analysis":
                value = tuple(StepAnalysis.from_dict(a, parse_time) for a in value)
            elif name in ("step", "target_ready"):
                value = int(value)
            values[name] = value
        return cls(**values)


_WIRE = {
    "stable_revision": "stableRevision",
    "target_revision": "targetRevision",
    "phase": "phase",
    "step": "step",
    "started_at": "startedAt",
    "paused_at": "pausedAt",
    "progress_at": "progressAt",
    "target_ready": "targetReady",
    "aborted_revision": "abortedRevision",
    "reason": "reason",
    "message": "message",
    "making_room": "makingRoom",
    "analysis": "analysis",
}
_TIMES = {"started_at", "paused_at", "progress_at"}


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
