"""The rollout state machine: how a ModelService's replicas and traffic are split between its
revisions, as a pure function of what is wanted, what was decided before and what is observed.

    decision = plan(policy=..., desired=..., total=..., state=..., revisions=..., now=...,
                    promoted_step=..., measurement=...)

No clock and no client: `now` is an argument and the state lives in `status.rollout`, so a
restarted operator carries on where the last one stopped. The operator applies the decision
(Deployment replicas, which revisions the Service selects, prunes), stores
`decision.state`, and calls again when a child changes or after `requeue_after` seconds.
Events come only from transitions of the state, so calling again with the same inputs emits
nothing new. docs/rollouts.md describes the behaviour for a person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

from . import budget
from .analysis import AnalysisPolicy, Measurement, StepAnalysis, judge
from .revisions import ObservedRevision, Revisions, parse_time
from .vocabulary import (
    ANALYSIS_FAILED,
    AWAITING_ANALYSIS,
    MAKING_ROOM,
    MESSAGE_LIMIT,
    Cause,
    Event,
    EventType,
    one_line,
)

Strategy = Literal["RollingUpdate", "Canary", "BlueGreen"]
Phase = Literal["Stable", "Progressing", "Paused", "Aborted"]
WhenFull = Literal["Wait", "MakeRoom"]


# ---------------------------------------------------------------------------------------------
# Inputs


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


# ---------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True)
class Decision:
    replicas: dict[str, int]  # every kept revision (0 for old ones) and the desired one
    weights: dict[str, int]  # percent of the traffic; the serving revisions, summing to 100
    serving: tuple[str, ...]  # the revisions that receive traffic (the keys of weights)
    state: RolloutState
    requeue_after: float | None = None  # seconds to the next time-based change
    events: tuple[Event, ...] = ()
    prune: tuple[str, ...] = ()  # revisions beyond revisionHistoryLimit, already at 0: delete
    # What the rollout waits for beyond its pods (a canary pause, a promotion), or why it was
    # given up. None: stable, or pods coming up; the pods say how far, or what fails them.
    cause: Cause | None = None
    # The serving revisions, then those that still run pods without traffic (a canary coming
    # up, a BlueGreen preview, the old revision draining): a router's backends, at weight 0
    # until they serve, dropped once drained.
    backends: tuple[str, ...] = ()
    # MakeRoom: per old revision, the nodes of the ready pods it gives up (one entry per pod), so
    # that the operator has the ReplicaSet remove exactly those (pod-deletion-cost).
    give_up: dict[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The state machine


def plan(
    *,
    policy: RolloutPolicy,
    desired: str,
    total: int,
    state: RolloutState | None,
    revisions: Sequence[ObservedRevision],
    now: float,
    promoted_step: int | None = None,
    measurement: Measurement | None = None,
) -> Decision:
    """Decide one pass. Deterministic: the same inputs give the same decision."""
    seen = Revisions.of(revisions)
    run = _Pass(policy, desired, max(0, total), seen, now, promoted_step, state, measurement)
    stable = run.stable()
    if stable is None:
        replicas, weights = run.first_revision()
    elif desired == stable:
        replicas, weights = run.settle(stable)
    elif run.state.phase == "Aborted" and run.state.aborted_revision == desired:
        # Stays aborted until the spec asks for something else: no retry, no flapping.
        run.state = replace(run.state, stable_revision=stable)
        replicas, weights = run.return_to(stable)
    else:
        replicas, weights = run.rollout(stable)
    return run.decision(replicas, weights)


@dataclass
class _Pass:
    """One call of `plan`: the inputs, and the state and events as the pass moves along."""

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
    give_up: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False)
    verdict: str = field(default="", init=False)  # the message of the measurement just counted

    def __post_init__(self) -> None:
        self.state = self.prior or RolloutState()

    # -- which revision to fall back on ----------------------------------------------------------

    def stable(self) -> str | None:
        """The revision to fall back on. When status.rollout was lost (or its stable revision
        deleted by hand), adopt what the cluster shows rather than start from nothing."""
        remembered = self.state.stable_revision
        if remembered in self.seen or (remembered and remembered == self.desired):
            return remembered  # (a stable revision at 0 replicas may not be created yet)
        if remembered is None and self.state.target_revision is not None:
            return None  # the first revision is still coming up: nothing proven yet
        if self.desired in self.seen and self.seen.available(self.desired) >= self.total:
            return self.desired
        return self.seen.most_available()

    # -- paths ---------------------------------------------------------------------------------

    def first_revision(self) -> tuple[dict[str, int], dict[str, int]]:
        """Nothing to protect: the desired revision takes every replica at once."""
        desired, prior = self.desired, self.state
        replicas = {r: 0 for r in self.seen.others(desired)} | {desired: self.total}
        if self.seen.available(desired) >= self.total:
            if prior.stable_revision != desired or prior.phase != "Stable":
                self.emit(
                    "Normal", "RolloutComplete", f"revision {self.seen.name(desired)} is stable"
                )
            self.state = RolloutState(stable_revision=desired)
            return replicas, {desired: 100}
        ongoing = (
            prior.target_revision == desired
            and prior.stable_revision is None
            and prior.phase == "Progressing"
        )
        if not ongoing:
            prior = self.started()
        self.state = self.progressed(prior)
        if self.state.reason is None and self.past_deadline():
            # No older revision to go back to: keep trying, but say so once.
            reason, message = self.stall_reason()
            self.state = replace(self.state, reason=reason, message=message)
            self.emit("Warning", "RolloutStalled", message)
        return replicas, {desired: 100}

    def settle(self, stable: str) -> tuple[dict[str, int], dict[str, int]]:
        """The desired revision is the stable one: a steady state, a scale change, or the
        spec set back during a rollout (traffic returns at once)."""
        prior = self.state
        if prior.target_revision not in (None, stable):
            self.emit(
                "Normal",
                "RolloutAbandoned",
                f"rollout of revision {self.seen.name(prior.target_revision)} abandoned; "
                f"revision {self.seen.name(stable)} serves again",
            )
        # The last rollout's analysis stays on show until the next one begins.
        kept = prior.analysis if prior.target_revision is None else ()
        self.state = RolloutState(stable_revision=stable, analysis=kept)
        return self.return_to(stable)

    def rollout(self, stable: str) -> tuple[dict[str, int], dict[str, int]]:
        desired, prior = self.desired, self.state
        if prior.target_revision != desired or prior.phase in ("Stable", "Aborted"):
            superseded = prior.target_revision
            name = self.seen.name
            message = (
                f"rolling out revision {name(desired)} over revision {name(stable)} "
                f"({self.policy.strategy})"
            )
            if superseded not in (None, stable, desired) and prior.phase != "Aborted":
                message += f"; the rollout of revision {self.seen.name(superseded)} was superseded"
            self.emit("Normal", "RolloutStarted", message)
            prior = self.started()
        self.state = self.progressed(replace(prior, stable_revision=stable))

        if self.total == 0:  # nothing runs: nothing to protect
            return self.complete(stable, {desired: 0, stable: 0})
        if self.policy.strategy == "Canary":
            replicas, weights = self.canary(stable)
        elif self.policy.strategy == "BlueGreen":
            replicas, weights = self.blue_green(stable)
        else:
            replicas, weights = self.rolling(stable)
        if self.state.phase == "Stable":
            return replicas, weights
        self.make_room(replicas)
        if self.state.phase == "Progressing" and self.past_deadline():
            return self.abort(stable)
        return replicas, weights

    def rolling(self, stable: str) -> tuple[dict[str, int], dict[str, int]]:
        targets = {r: 0 for r in self.seen.others(self.desired)} | {self.desired: self.total}
        replicas = self.transition(targets, stable)
        if self.done(replicas):
            return self.complete(stable, replicas)
        return replicas, self.by_ready(replicas, stable)

    def blue_green(self, stable: str) -> tuple[dict[str, int], dict[str, int]]:
        """The new revision comes up in full beside the stable one; traffic switches at once."""
        desired = self.desired
        replicas = {r: 0 for r in self.seen.others(desired, stable)}
        if self.seen.available(desired) >= self.total:
            return self.complete(stable, replicas | {desired: self.total, stable: 0})
        return replicas | {stable: self.total, desired: self.total}, {stable: 100}

    def canary(self, stable: str) -> tuple[dict[str, int], dict[str, int]]:
        desired, steps = self.desired, self.policy.canary_steps
        others = {r: 0 for r in self.seen.others(desired, stable)}  # not part of this canary
        # Each pass walks as far as it can: steps whose pause already ended pass at once.
        while True:
            index = self.state.step
            if index >= len(steps):
                targets = {desired: self.total, stable: 0}
                replicas = others | self.transition(targets, stable)
                if self.done(replicas):
                    return self.complete(stable, replicas)
                # Never less than the last step gave it, and more as its pods take over.
                last = steps[-1].weight if steps else 0
                return replicas, self.canary_weights(replicas, stable, last, growing=True)
            step = steps[index]
            canary, base = budget.canary_split(self.total, step.weight, self.budget()[0])
            targets = {desired: canary, stable: base}
            replicas = others | self.transition(targets, stable)
            if self.state.phase == "Progressing":
                reached = (
                    replicas[desired] == canary
                    and replicas[stable] == base
                    and self.seen.ready(desired) >= canary
                )
                if not reached:
                    previous = steps[index - 1].weight if index else 0
                    return replicas, self.canary_weights(replicas, stable, previous)
                self.state = replace(self.state, phase="Paused", paused_at=self.now)
                self.emit("Normal", "CanaryStepReached", self.step_message(index, step))
                if self.policy.analysis is not None:
                    record = StepAnalysis(step=index, weight=step.weight)
                    self.state = replace(self.state, analysis=(*self.state.analysis, record))
            elif self.analyse(index) == "Failed":
                return self.abort(stable, analysis_failed=True)
            if not self.released(index, step):
                return replicas, self.canary_weights(replicas, stable, step.weight)
            self.state = replace(
                self.state,
                step=index + 1,
                phase="Progressing",
                paused_at=None,
                progress_at=self.now,
            )

    def abort(
        self, stable: str, analysis_failed: bool = False
    ) -> tuple[dict[str, int], dict[str, int]]:
        reason, why = self.analysis_failure() if analysis_failed else self.stall_reason()
        # The cause can be long (a scheduler message): the outcome must survive the cut.
        outcome = f"; traffic went back to revision {self.seen.name(stable)}"
        message = one_line(why, MESSAGE_LIMIT - len(outcome)) + outcome
        self.state = replace(
            self.state,
            phase="Aborted",
            aborted_revision=self.desired,
            paused_at=None,
            reason=reason,
            message=message,
            making_room=None,
        )
        # An analysis failure's Event carries its own reason, the one the conditions show.
        self.emit("Warning", reason if analysis_failed else "RolloutAborted", message)
        return self.return_to(stable)

    def return_to(self, stable: str) -> tuple[dict[str, int], dict[str, int]]:
        """Everything back on `stable`. RollingUpdate goes back the way it came (the others
        may hold most of the pods); Canary and BlueGreen switch at once, since the stable
        revision still holds nearly all of them."""
        targets = {r: 0 for r in self.seen.others(stable)} | {stable: self.total}
        if self.policy.strategy == "RollingUpdate":
            replicas = self.transition(targets, stable)
            return replicas, self.by_ready(replicas, stable)
        return targets, {stable: 100}

    def complete(
        self, stable: str, replicas: dict[str, int]
    ) -> tuple[dict[str, int], dict[str, int]]:
        desired = self.desired
        self.emit(
            "Normal",
            "RolloutComplete",
            f"revision {self.seen.name(desired)} is stable (was {self.seen.name(stable)})",
        )
        self.state = RolloutState(stable_revision=desired, analysis=self.state.analysis)
        return replicas, {desired: 100}

    # -- canary analysis -----------------------------------------------------------------------

    def step_analysis(self, index: int) -> StepAnalysis | None:
        """The current step's record, when the step is analysed."""
        if self.policy.analysis is None:
            return None
        records = self.state.analysis
        if records and records[-1].step == index:
            return records[-1]
        return None

    def analyse(self, index: int) -> str | None:
        """Count the new measurement, if any, into the step's record: "Failed" once the step's
        failures exceed failureLimit. A window that began before the step was reached, or
        ended before the last one counted, is not this step's; one that is empty or not over
        yet is no measurement (so the pass that reaches a step never counts one, and a second
        pass on the same inputs counts nothing new)."""
        record, m, policy = self.step_analysis(index), self.measurement, self.policy.analysis
        if record is None or m is None or policy is None or not m.start < m.end <= self.now:
            return None
        paused_at = self.state.paused_at if self.state.paused_at is not None else self.now
        if m.start < paused_at or (record.measured_at is not None and m.end <= record.measured_at):
            return None
        verdict = judge(policy, m)
        record = record.counted(m, verdict)
        self.state = replace(self.state, analysis=(*self.state.analysis[:-1], record))
        self.verdict = verdict.message
        if verdict.result == "Failed":
            self.emit("Warning", "AnalysisMeasurementFailed", f"step {index}: {verdict.message}")
            if record.failed > policy.failure_limit:
                return "Failed"
        return None

    def analysis_failure(self) -> tuple[str, str]:
        record = self.state.analysis[-1]
        measured = record.passed + record.failed + record.inconclusive
        return ANALYSIS_FAILED, one_line(
            f"revision {self.seen.name(self.desired)} failed analysis at step {record.step} "
            f"({record.weight}%): {record.failed} of {measured} measurements failed; "
            f"last: {self.verdict}"
        )

    # -- helpers -------------------------------------------------------------------------------

    def transition(self, targets: Mapping[str, int], stable: str) -> dict[str, int]:
        """One move toward `targets` within the budget (budget.transition)."""
        surge, unavailable = self.budget()
        return budget.transition(
            targets,
            decided={r: self.seen.spec(r) for r in targets},
            ready={r: self.seen.ready(r) for r in targets},
            created=self.seen.created(targets),
            stable=stable,
            desired=self.desired,
            total=self.total,
            surge=surge,
            unavailable=unavailable,
        )

    def budget(self) -> tuple[int, int]:
        """(surge, unavailable): the policy's, or, while old pods make room, no surge (a surge
        pod would find no GPU either) and one pod at least that may go."""
        surge, unavailable = self.policy.budget
        return (0, max(unavailable, 1)) if self.room_wanted() else (surge, unavailable)

    def room_wanted(self) -> bool:
        """MakeRoom applies: a rollout (not its abort, not BlueGreen, which needs room for both
        revisions by design) whose new pods the scheduler cannot place for lack of their GPU,
        while ready old pods hold that GPU where the new ones could use it."""
        return (
            self.policy.when_full == "MakeRoom"
            and self.policy.strategy != "BlueGreen"
            and self.state.phase in ("Progressing", "Paused")
            and self.state.stable_revision not in (None, self.desired)
            and self.seen.unplaced(self.desired) > 0
            and any(self.seen.room_on(r) for r in self.seen.others(self.desired))
        )

    def make_room(self, replicas: Mapping[str, int]) -> None:
        """Which ready old pods this move gives up for the new revision's pending pods, and
        where. Giving one up is progress: the deadline then counts from it, while its GPU is
        freed and the pending pod starts on it. The message stands until the pods are placed."""
        if not self.room_wanted():
            if self.state.making_room is not None:
                self.state = replace(self.state, making_room=None)
            return
        for r in self.seen.others(self.desired):
            taken = self.seen.ready(r) - replicas.get(r, 0)
            if taken > 0 and self.seen.room_on(r):
                self.give_up[r] = self.seen.room_on(r)[:taken]
        if self.give_up:
            self.state = replace(self.state, progress_at=self.now, making_room=self.room_message())

    def room_message(self) -> str:
        name, desired = self.seen.name, self.desired
        parts = []
        for r, nodes in self.give_up.items():
            pods, where = len(nodes), sorted(set(nodes))
            parts.append(
                f"revision {name(r)} gives up {pods} pod{'s' * (pods != 1)} on "
                f"node{'s' * (len(where) != 1)} {', '.join(where)}"
            )
        pending = self.seen.unplaced(desired)
        need = self.seen.short_of(desired)
        return one_line(
            f"making room: {'; '.join(parts)}{f' ({need})' if need else ''} for revision "
            f"{name(desired)}'s pending pod{'s' * (pending != 1)}"
        )

    def done(self, replicas: Mapping[str, int]) -> bool:
        """The desired revision holds every replica, all available, and nothing else runs."""
        desired = self.desired
        return (
            replicas.get(desired, 0) == self.total
            and self.seen.available(desired) >= self.total
            and all(n == 0 for r, n in replicas.items() if r != desired)
        )

    def by_ready(self, replicas: Mapping[str, int], stable: str) -> dict[str, int]:
        ready = {r: self.seen.ready(r) for r in replicas}
        return budget.weights_by_ready(replicas, ready, stable, self.desired)

    def canary_weights(
        self, replicas: Mapping[str, int], stable: str, weight: int, growing: bool = False
    ) -> dict[str, int]:
        """The split during a canary: the ready pods' share with one Service; with a router,
        `weight` exactly (`growing`: or the ready pods' share, when that is more)."""
        shares = self.by_ready(replicas, stable)
        if not self.policy.exact_weights:
            return shares
        if growing:
            weight = max(weight, shares.get(self.desired, 0))
        split = {self.desired: weight, stable: 100 - weight}
        split = {r: w for r, w in split.items() if w > 0}
        # A weight on a revision with no pod to take it (a lone canary pod that replaced the
        # stable one, say) would be requests refused: then the pods' share it is.
        if any(replicas.get(r, 0) == 0 or self.seen.ready(r) == 0 for r in split):
            return shares
        return split

    def started(self) -> RolloutState:
        """A rollout of the desired revision beginning now."""
        return RolloutState(
            target_revision=self.desired,
            phase="Progressing",
            started_at=self.now,
            progress_at=self.now,
            target_ready=self.seen.ready(self.desired),
        )

    def progressed(self, state: RolloutState) -> RolloutState:
        """More ready pods on the target than ever before in this rollout is progress."""
        ready = self.seen.ready(self.desired)
        if ready > state.target_ready:
            return replace(state, target_ready=ready, progress_at=self.now)
        return state

    def past_deadline(self) -> bool:
        since = self.state.progress_at if self.state.progress_at is not None else self.now
        return self.now - since >= self.policy.progress_deadline_seconds

    def stall_reason(self) -> tuple[str, str]:
        failure = self.seen.failure(self.desired)
        detail = f": {failure}" if failure else ""
        return failure_reason(failure) or "ProgressDeadlineExceeded", one_line(
            f"revision {self.seen.name(self.desired)} made no progress for "
            f"{self.policy.progress_deadline_seconds:g}s{detail}"
        )

    def released(self, index: int, step: Step) -> bool:
        """The step's pause ended (or it was promoted by hand) and, with analysis, one of its
        measurements passed."""
        return self.pause_over(index, step) and self.analysis_passed(index)

    def pause_over(self, index: int, step: Step) -> bool:
        if step.pause_seconds is None:
            return self.promoted_step is not None and self.promoted_step >= index
        paused_at = self.state.paused_at if self.state.paused_at is not None else self.now
        return self.now - paused_at >= step.pause_seconds

    def analysis_passed(self, index: int) -> bool:
        if self.policy.analysis is None:
            return True
        record = self.step_analysis(index)
        return record is not None and record.passed > 0

    def step_message(self, index: int, step: Step) -> str:
        head = f"step {index} of revision {self.seen.name(self.desired)} at {step.weight}%"
        if step.pause_seconds is None:
            return f"{head}: waiting for spec.rollout.promotedStep >= {index}"
        return f"{head}: pausing {step.pause_seconds}s"

    def emit(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    # -- the decision ----------------------------------------------------------------------------

    def decision(self, replicas: dict[str, int], weights: dict[str, int]) -> Decision:
        state = self.state
        replicas = {r: 0 for r in self.seen} | {self.desired: 0} | replicas
        prune = self.prune(replicas)
        for r in prune:
            del replicas[r]
        return Decision(
            replicas=replicas,
            weights=weights,
            serving=tuple(weights),
            state=state,
            requeue_after=self.requeue_after(),
            events=tuple(self.events),
            prune=prune,
            cause=self.cause(),
            backends=self.backends(weights, replicas),
            give_up=dict(self.give_up),
        )

    def backends(self, weights: Mapping[str, int], replicas: Mapping[str, int]) -> tuple[str, ...]:
        idle = [
            r
            for r in replicas
            if r not in weights and (replicas[r] > 0 or not self.seen.drained(r))
        ]
        return (*weights, *sorted(idle))

    def prune(self, replicas: Mapping[str, int]) -> tuple[str, ...]:
        """Old revisions beyond the history limit, once scaled to 0 and drained."""
        state = self.state
        history = self.seen.history(self.desired, state.stable_revision, state.target_revision)
        return tuple(
            r
            for r in history[max(0, self.policy.revision_history_limit) :]
            if replicas.get(r, 0) == 0 and self.seen.drained(r)
        )

    def requeue_after(self) -> float | None:
        state, wakeups = self.state, []
        deadline_applies = state.stable_revision is not None or state.reason is None
        if state.phase == "Progressing" and deadline_applies and state.progress_at is not None:
            wakeups.append(state.progress_at + self.policy.progress_deadline_seconds)
        steps = self.policy.canary_steps
        if state.phase == "Paused" and state.step < len(steps) and state.paused_at is not None:
            pause = steps[state.step].pause_seconds
            if pause is not None:
                wakeups.append(state.paused_at + pause)
        future = [t - self.now for t in wakeups if t > self.now]
        return min(future) if future else None

    def cause(self) -> Cause | None:
        state = self.state
        if state.phase == "Aborted":
            return Cause.failed(state.reason or "RolloutAborted", state.message or "")
        steps = self.policy.canary_steps
        if self.policy.strategy == "Canary" and state.phase == "Paused" and state.step < len(steps):
            step = steps[state.step]
            message = self.step_message(state.step, step)
            record = self.step_analysis(state.step)
            if record is not None:
                message += f"; analysis: {analysis_summary(record)}"
                if self.pause_over(state.step, step):
                    return Cause.waiting(AWAITING_ANALYSIS, message)
            reason = "AwaitingPromotion" if step.pause_seconds is None else "CanaryPaused"
            return Cause.waiting(reason, message)
        if state.making_room is not None:
            return Cause.waiting(MAKING_ROOM, state.making_room)
        # A first revision that stalls keeps trying (RolloutStalled said so once): its pods
        # tell why better than the deadline does.
        return None


def analysis_summary(record: StepAnalysis) -> str:
    """A step's measurements so far, for a person: how many passed and failed, and the last."""
    if record.last is None:
        return "no measurement yet"
    figures = f"canary {record.canary.describe()}" if record.canary else ""
    if record.stable is not None:
        figures += f", stable {record.stable.describe()}"
    return (
        f"{record.passed} passed, {record.failed} failed, {record.inconclusive} inconclusive; "
        f"last {record.last} ({figures})"
    )


def failure_reason(failure: str | None) -> str | None:
    """The CamelCase reason a failure starts with ("Unschedulable: 0/4 nodes ..."), for
    conditions; "RevisionFailed" when it starts with none."""
    if not failure:
        return None
    head = failure.split(":", 1)[0].strip()
    return head if head.isalnum() and head[:1].isupper() else "RevisionFailed"
