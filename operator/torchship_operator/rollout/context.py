"""One call of `plan`: its inputs, and the state and events as the pass moves along. Every part
of the state machine reads and moves this one context; none keeps anything of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..analysis import Measurement
from ..revisions import Revisions
from ..vocabulary import Event, EventType
from .policy import RolloutPolicy
from .state import RolloutState

# What a path decides: (replicas per revision, percent of the traffic per serving revision).
Split = tuple[dict[str, int], dict[str, int]]


@dataclass
class Pass:
    policy: RolloutPolicy
    desired: str
    total: int
    seen: Revisions  # the observed revisions
    now: float
    promoted_step: int | None
    prior: RolloutState | None
    measurement: Measurement | None  # canary analysis: the latest window, when one is new
    state: RolloutState = field(init=False)
    events: list[Event] = field(default_factory=list, init=False)
    # MakeRoom: per old revision, the nodes of the ready pods it gives up (one per pod).
    give_up: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False)
    verdict: str = field(default="", init=False)  # the message of the measurement just counted

    def __post_init__(self) -> None:
        self.state = self.prior or RolloutState()

    def emit(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))
