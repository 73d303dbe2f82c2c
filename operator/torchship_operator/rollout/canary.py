"""Canary: the new revision takes each step's share of the traffic, pauses there (for some
seconds, or until promoted by hand through spec.rollout.promotedStep; with analysis, until a
measurement passes), and takes all of it after the last step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .. import budget
from . import endings, making_room, moves, step_analysis
from .context import Pass, Split
from .policy import Step


def advance(run: Pass, stable: str) -> Split:
    desired, steps = run.desired, run.policy.canary_steps
    others = {r: 0 for r in run.seen.others(desired, stable)}  # not part of this canary
    # Each pass walks as far as it can: steps whose pause already ended pass at once.
    while True:
        index = run.state.step
        if index >= len(steps):
            return take_over(run, stable, others)
        step = steps[index]
        canary, base = budget.canary_split(run.total, step.weight, making_room.budget(run)[0])
        replicas = others | moves.transition(run, {desired: canary, stable: base}, stable)
        if run.state.phase == "Progressing":
            reached = (
                replicas[desired] == canary
                and replicas[stable] == base
                and run.seen.ready(desired) >= canary
            )
            if not reached:
                previous = steps[index - 1].weight if index else 0
                return replicas, weights(run, replicas, stable, previous)
            pause(run, index, step)
        elif step_analysis.failed(run, index):
            return endings.abort(run, stable, analysis_failed=True)
        if not released(run, index, step):
            return replicas, weights(run, replicas, stable, step.weight)
        run.state = replace(
            run.state, step=index + 1, phase="Progressing", paused_at=None, progress_at=run.now
        )


def take_over(run: Pass, stable: str, others: dict[str, int]) -> Split:
    """After the last step: the desired revision takes every replica and all the traffic."""
    replicas = others | moves.transition(run, {run.desired: run.total, stable: 0}, stable)
    if moves.done(run, replicas):
        return endings.complete(run, stable, replicas)
    # Never less than the last step gave it, and more as its pods take over.
    steps = run.policy.canary_steps
    last = steps[-1].weight if steps else 0
    return replicas, weights(run, replicas, stable, last, growing=True)


def pause(run: Pass, index: int, step: Step) -> None:
    """The step was reached: its pause (and its analysis) begins now."""
    run.state = replace(run.state, phase="Paused", paused_at=run.now)
    run.emit("Normal", "CanaryStepReached", step_message(run, index, step))
    step_analysis.opened(run, index, step)


def released(run: Pass, index: int, step: Step) -> bool:
    """The step's pause ended (or it was promoted by hand) and, with analysis, one of its
    measurements passed."""
    return pause_over(run, index, step) and step_analysis.passed(run, index)


def pause_over(run: Pass, index: int, step: Step) -> bool:
    if step.pause_seconds is None:
        return run.promoted_step is not None and run.promoted_step >= index
    paused_at = run.state.paused_at if run.state.paused_at is not None else run.now
    return run.now - paused_at >= step.pause_seconds


def pause_ends(run: Pass) -> float | None:
    """When the current step's timed pause ends, while paused at one."""
    state, steps = run.state, run.policy.canary_steps
    if state.phase == "Paused" and state.step < len(steps) and state.paused_at is not None:
        pause_seconds = steps[state.step].pause_seconds
        if pause_seconds is not None:
            return state.paused_at + pause_seconds
    return None


def weights(
    run: Pass, replicas: Mapping[str, int], stable: str, weight: int, growing: bool = False
) -> dict[str, int]:
    """The split during a canary: the ready pods' share with one Service; with a router,
    `weight` exactly (`growing`: or the ready pods' share, when that is more)."""
    shares = moves.by_ready(run, replicas, stable)
    if not run.policy.exact_weights:
        return shares
    if growing:
        weight = max(weight, shares.get(run.desired, 0))
    split = {run.desired: weight, stable: 100 - weight}
    split = {r: w for r, w in split.items() if w > 0}
    # A weight on a revision with no pod to take it (a lone canary pod that replaced the
    # stable one, say) would be requests refused: then the pods' share it is.
    if any(replicas.get(r, 0) == 0 or run.seen.ready(r) == 0 for r in split):
        return shares
    return split


def step_message(run: Pass, index: int, step: Step) -> str:
    head = f"step {index} of revision {run.seen.name(run.desired)} at {step.weight}%"
    if step.pause_seconds is None:
        return f"{head}: waiting for spec.rollout.promotedStep >= {index}"
    return f"{head}: pausing {step.pause_seconds}s"
