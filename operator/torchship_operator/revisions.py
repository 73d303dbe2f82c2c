"""The observed revisions of a ModelService as the rollout state machine reads them: what was
decided for each, how many of its pods are ready and available, and its name for a person.

Pure and read-only: the state machine (rollout/) asks, this module answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .vocabulary import DeploymentView


@dataclass(frozen=True)
class ObservedRevision:
    """One revision's Deployment as observed."""

    revision: str  # the short hash that names the revision
    replicas: int = 0  # spec.replicas: what was last decided for it
    ready: int = 0
    available: int = 0
    version: str | None = None  # the declared model.version, for messages
    created_at: float = 0.0  # orders the history: newest revisions are kept
    failure: str | None = None  # why its pods do not come up, e.g. "Unschedulable: 0/4 nodes..."
    # Making room (rollout.whenFull: MakeRoom), from the scheduler's own words: pods pending for
    # lack of the GPU they ask for ("Insufficient nvidia.com/gpu"), what each asks for ("1
    # nvidia.com/gpu"), and the nodes of ready pods of this revision whose going would free that
    # for the desired revision (one entry per pod).
    unplaced: int = 0
    short_of: str | None = None
    room_on: tuple[str, ...] = ()

    @classmethod
    def from_deployment(
        cls, deployment: Mapping[str, Any], failure: str | None = None
    ) -> ObservedRevision:
        view = DeploymentView.of(deployment)
        return cls(
            revision=view.revision,
            replicas=view.replicas,
            ready=view.ready,
            available=view.available,
            version=view.version,
            created_at=parse_time(view.created) if view.created else 0.0,
            failure=failure,
        )


def parse_time(value: str | float) -> float:
    """RFC 3339 (or seconds already) -> seconds since the epoch."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Revisions:
    """The observed revisions by name. A revision not observed (not created yet) reads as 0 of
    everything; ready and available pods count only up to spec.replicas, since pods above it
    are on their way out."""

    by_name: Mapping[str, ObservedRevision]

    @classmethod
    def of(cls, observed: Iterable[ObservedRevision]) -> Revisions:
        return cls({r.revision: r for r in observed})

    def __contains__(self, revision: object) -> bool:
        return revision in self.by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_name)

    def spec(self, revision: str) -> int:
        r = self.by_name.get(revision)
        return max(0, r.replicas) if r else 0

    def ready(self, revision: str) -> int:
        r = self.by_name.get(revision)
        return max(0, min(r.ready, r.replicas)) if r else 0

    def available(self, revision: str) -> int:
        r = self.by_name.get(revision)
        return max(0, min(r.available, r.replicas)) if r else 0

    def created(self, revisions: Iterable[str]) -> dict[str, float]:
        """Creation times of those of `revisions` that exist."""
        return {r: self.by_name[r].created_at for r in revisions if r in self.by_name}

    def failure(self, revision: str) -> str | None:
        r = self.by_name.get(revision)
        return r.failure if r else None

    def unplaced(self, revision: str) -> int:
        r = self.by_name.get(revision)
        return max(0, r.unplaced) if r else 0

    def short_of(self, revision: str) -> str | None:
        r = self.by_name.get(revision)
        return r.short_of if r else None

    def room_on(self, revision: str) -> tuple[str, ...]:
        """The nodes of the ready pods of `revision` whose going would free what the desired
        revision lacks (no more of them than it has ready pods)."""
        r = self.by_name.get(revision)
        return tuple(r.room_on[: self.ready(revision)]) if r else ()

    def others(self, *keep: str | None) -> list[str]:
        return [r for r in self.by_name if r not in keep]

    def most_available(self) -> str | None:
        """The revision with the most available pods (the newest on a tie); None when no
        revision has any."""
        candidates = [r for r in self.by_name.values() if self.available(r.revision) > 0]
        if not candidates:
            return None
        return max(candidates, key=lambda r: (self.available(r.revision), r.created_at)).revision

    def history(self, *keep: str | None) -> list[str]:
        """The revisions other than `keep`, newest first."""
        rest = (r for r in self.by_name.values() if r.revision not in keep)
        return [r.revision for r in sorted(rest, key=lambda r: (r.created_at, r.revision))][::-1]

    def drained(self, revision: str) -> bool:
        """Decided down to 0 and no pod left ready."""
        r = self.by_name.get(revision)
        return r is None or (r.replicas == 0 and r.ready == 0)

    def name(self, revision: str | None) -> str:
        """A revision as a person knows it: its hash and declared version."""
        r = self.by_name.get(revision or "")
        return f"{revision} ({r.version})" if r and r.version else str(revision)
