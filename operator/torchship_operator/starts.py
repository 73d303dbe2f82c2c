"""An Event for each start phase a pod finishes, with its duration, once per pod.

The durations come from Kubernetes' timestamps (the scheduler's, the containers') and from the
fetch's own report; the one moment Kubernetes does not record, the startup probe passing
(loaded, warm-up begins), is when this process first saw it. The memory is this process's: a
phase that ended before it watched (an operator restart) is not told again.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import phases


@dataclass
class Seen:
    phase: str
    waiting_since: str | None = None  # when WaitingForGPU began
    started_at: float | None = None  # when the startup probe was seen passing
    told: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class StartEvent:
    reason: str
    message: str


def epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class StartEvents:
    def __init__(self) -> None:
        self.pods: dict[Hashable, dict[str, Seen]] = {}

    def forget(self, key: Hashable) -> None:
        self.pods.pop(key, None)

    def observe(
        self, key: Hashable, pods: Sequence[Mapping[str, Any]], now: float
    ) -> list[StartEvent]:
        """The Events this look at `key`'s pods brings: the phases finished since the last."""
        before = self.pods.get(key, {})
        after: dict[str, Seen] = {}
        events: list[StartEvent] = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            facts = pod.get("start")
            if facts is None:
                continue
            name = pod["metadata"]["name"]
            current = phases.pod_start(facts)
            seen = before.get(name)
            if seen is None:  # first sight: what already ended is not news
                rank = phases.ORDER[current.phase]
                seen = Seen(current.phase, told={p for p, i in phases.ORDER.items() if i < rank})
            if current.phase == "WaitingForGPU" and seen.waiting_since is None:
                seen.waiting_since = current.since
            if current.phase in ("WarmingUp", "Ready") and seen.started_at is None:
                seen.started_at = now if current.phase == "WarmingUp" else None
            events += self._finished(name, facts, current.phase, seen)
            seen.phase = current.phase
            after[name] = seen
        if after:
            self.pods[key] = after
        else:
            self.pods.pop(key, None)
        return events

    def _finished(
        self, pod: str, facts: Mapping[str, Any], phase: str, seen: Seen
    ) -> list[StartEvent]:
        events = []
        rank = phases.ORDER[phase]
        for done in phases.START_REASONS:
            if phases.ORDER[done] >= rank or done in seen.told:
                continue
            seen.told.add(done)
            if event := self._tell(pod, facts, done, seen):
                events.append(event)
        return events

    @staticmethod
    def _tell(pod: str, facts: Mapping[str, Any], done: str, seen: Seen) -> StartEvent | None:
        scheduled_at = (facts.get("scheduled") or {}).get("at")
        runtime = next((c for c in facts.get("containers", []) if not c["init"]), {})
        running = runtime.get("running")
        if done == "WaitingForGPU":
            waited = phases.seconds_between(seen.waiting_since, scheduled_at)
            if waited is None:
                return None
            return StartEvent("Scheduled", f"pod {pod}: got its GPU after waiting {waited:.0f} s")
        if done == "PullingImage":
            pulled = phases.seconds_between(scheduled_at, phases.first_start(facts))
            if pulled is None:
                return None
            text = f"pod {pod}: image pulled and started in {pulled:.0f} s"
            return StartEvent("ImagePulled", text)
        if done == "Downloading":
            report = phases.fetch_report(facts)
            if report is None:
                return None
            how = " (already in the cache)" if report.get("cached") else ""
            bytes_ = f", {phases.size(report['bytes'])}" if report.get("bytes") else ""
            took = report["seconds"]
            return StartEvent(
                "ModelFetched", f"pod {pod}: model fetched in {took:.1f} s{bytes_}{how}"
            )
        ready_at = epoch(facts.get("readyAt"))
        began = epoch(running)
        if done == "Loading":
            if seen.started_at is not None and began is not None:
                took = seen.started_at - began
                return StartEvent("ModelLoaded", f"pod {pod}: model loaded in {took:.1f} s")
            if ready_at is not None and began is not None:  # loading and warm-up seen as one
                took = ready_at - began
                return StartEvent(
                    "ModelLoaded", f"pod {pod}: model loaded and warmed up in {took:.1f} s"
                )
            return None
        if done == "WarmingUp" and seen.started_at is not None and ready_at is not None:
            took = max(0.0, ready_at - seen.started_at)
            return StartEvent("WarmedUp", f"pod {pod}: warmed up in {took:.1f} s")
        return None
