"""Which pod events are worth a reconcile.

Pods matter to a ModelService's status only for why they are not coming up (unschedulable,
crash-looping, an image that cannot be pulled): how many are ready reaches it through the
Deployment, whose own events follow. A healthy pod's events would each cost a pass computing
what its Deployment's next event will say anyway; so a pod event wakes its ModelService only
while the pod reports a failure, once more when it stops (or goes) so that the failure is
cleared, and when its start moves to the next phase (phases.py), which status and the phase
Events follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import phases, status


class FailingPods:
    def __init__(self) -> None:
        self.failing: set[tuple[str, str]] = set()
        self.phase: dict[tuple[str, str], str] = {}

    def wakes(self, namespace: str, name: str, pod: Mapping[str, Any], deleted: bool) -> bool:
        """Whether this event of pod `namespace/name` (as the pod cache holds it) should
        wake its ModelService."""
        key = (namespace, name)
        was = key in self.failing
        failing = not deleted and status.pod_failure([pod]) is not None
        if failing:
            self.failing.add(key)
        else:
            self.failing.discard(key)
        start = pod.get("start")
        phase = phases.pod_start(start).phase if start is not None and not deleted else None
        moved = phase != self.phase.get(key)
        if phase is None:
            self.phase.pop(key, None)
        else:
            self.phase[key] = phase
        return failing or was or (moved and phase is not None)
