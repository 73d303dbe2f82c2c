"""What the state machine is asked to do: spec.rollout, reduced to what it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..analysis import AnalysisPolicy

Strategy = Literal["RollingUpdate", "Canary", "BlueGreen"]
WhenFull = Literal["Wait", "MakeRoom"]


@dataclass(frozen=True)
class Step:
    """One canary step: `weight` percent of the traffic on the new revision (1..100)."""

    weight: int
    pause_seconds: int | None = None  # None: wait until spec.rollout.promotedStep >= this step


@dataclass(frozen=True)
class RolloutPolicy:
    """spec.rollout, reduced to what the state machine needs."""

    strategy: Strategy = "RollingUpdate"
    steps: tuple[Step, ...] = ()
    max_surge: int = 1
    max_unavailable: int = 0
    progress_deadline_seconds: float = 600
    revision_history_limit: int = 3
    # trafficRouting gateway-api: a router carries each canary step's weight exactly, where
    # one Service can only split by ready pods.
    exact_weights: bool = False
    when_full: WhenFull = "Wait"  # a new pod short of its GPU: wait, or old pods make room
    analysis: AnalysisPolicy | None = None  # Canary: each step judged on measurements

    @classmethod
    def from_spec(cls, spec: Any) -> RolloutPolicy:
        """From the API's RolloutSpec (snake_case attributes)."""
        return cls(
            strategy=spec.strategy,
            steps=tuple(Step(s.weight, s.pause_seconds) for s in spec.steps or ()),
            max_surge=spec.max_surge,
            max_unavailable=spec.max_unavailable,
            progress_deadline_seconds=spec.progress_deadline_seconds,
            revision_history_limit=spec.revision_history_limit,
            exact_weights=spec.traffic_routing == "gateway-api",
            when_full=spec.when_full,
            analysis=AnalysisPolicy.from_spec(spec.analysis) if spec.strategy == "Canary" else None,
        )

    @property
    def canary_steps(self) -> tuple[Step, ...]:
        """The steps before the first one at 100%: reaching 100% ends the rollout."""
        kept: list[Step] = []
        for step in self.steps:
            if step.weight >= 100:
                break
            kept.append(Step(max(1, step.weight), step.pause_seconds))
        return tuple(kept)

    @property
    def budget(self) -> tuple[int, int]:
        """(surge, unavailable). Both 0 could never move a pod (the CRD rejects it); such a
        policy makes room one pod at a time, as `maxSurge: 0` means on a full cluster."""
        surge, unavailable = max(0, self.max_surge), max(0, self.max_unavailable)
        return (surge, unavailable) if surge or unavailable else (0, 1)
