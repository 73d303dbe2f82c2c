"""The decision a pass hands to the operator: replicas and weights, the router's backends,
what to prune, when to call again, and the cause of anything it waits for or gave up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..vocabulary import AWAITING_ANALYSIS, MAKING_ROOM, Cause, Event
from . import canary, progress, step_analysis
from .context import Pass
from .state import RolloutState


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


def decide(run: Pass, replicas: dict[str, int], weights: dict[str, int]) -> Decision:
    replicas = {r: 0 for r in run.seen} | {run.desired: 0} | replicas
    pruned = prune(run, replicas)
    for r in pruned:
        del replicas[r]
    return Decision(
        replicas=replicas,
        weights=weights,
        serving=tuple(weights),
        state=run.state,
        requeue_after=requeue_after(run),
        events=tuple(run.events),
        prune=pruned,
        cause=cause(run),
        backends=backends(run, weights, replicas),
        give_up=dict(run.give_up),
    )


def backends(run: Pass, weights: Mapping[str, int], replicas: Mapping[str, int]) -> tuple[str, ...]:
    idle = [
        r for r in replicas if r not in weights and (replicas[r] > 0 or not run.seen.drained(r))
    ]
    return (*weights, *sorted(idle))


def prune(run: Pass, replicas: Mapping[str, int]) -> tuple[str, ...]:
    """Old revisions beyond the history limit, once scaled to 0 and drained."""
    state = run.state
    history = run.seen.history(run.desired, state.stable_revision, state.target_revision)
    return tuple(
        r
        for r in history[max(0, run.policy.revision_history_limit) :]
        if replicas.get(r, 0) == 0 and run.seen.drained(r)
    )


def requeue_after(run: Pass) -> float | None:
    """Seconds to the next time-based change: a deadline, or the end of a canary's pause."""
    wakeups = [t for t in (progress.deadline(run), canary.pause_ends(run)) if t is not None]
    future = [t - run.now for t in wakeups if t > run.now]
    return min(future) if future else None


def cause(run: Pass) -> Cause | None:
    state, steps = run.state, run.policy.canary_steps
    if state.phase == "Aborted":
        return Cause.failed(state.reason or "RolloutAborted", state.message or "")
    if run.policy.strategy == "Canary" and state.phase == "Paused" and state.step < len(steps):
        step = steps[state.step]
        message = canary.step_message(run, state.step, step)
        record = step_analysis.record(run, state.step)
        if record is not None:
            message += f"; analysis: {step_analysis.summary(record)}"
            if canary.pause_over(run, state.step, step):
                return Cause.waiting(AWAITING_ANALYSIS, message)
        reason = "AwaitingPromotion" if step.pause_seconds is None else "CanaryPaused"
        return Cause.waiting(reason, message)
    if state.making_room is not None:
        return Cause.waiting(MAKING_ROOM, state.making_room)
    # A first revision that stalls keeps trying (RolloutStalled said so once): its pods
    # tell why better than the deadline does.
    return None
