"""The paths a pass takes: which revision to fall back on, the first revision (nothing to
protect), settling on the stable revision, a rollout by its strategy, and an aborted one
held until the spec asks for something else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from . import blue_green, canary, endings, making_room, progress, rolling
from .context import Pass, Split
from .policy import Strategy
from .state import RolloutState

# Each strategy, by its name in spec.rollout.strategy: one move of a rollout in progress.
STRATEGIES: dict[Strategy, Callable[[Pass, str], Split]] = {
    "RollingUpdate": rolling.advance,
    "Canary": canary.advance,
    "BlueGreen": blue_green.advance,
}


def take(run: Pass) -> Split:
    """The one path this pass takes."""
    stable = fallback(run)
    if stable is None:
        return first_revision(run)
    if run.desired == stable:
        return settle(run, stable)
    if run.state.phase == "Aborted" and run.state.aborted_revision == run.desired:
        # Stays aborted until the spec asks for something else: no retry, no flapping.
        run.state = replace(run.state, stable_revision=stable)
        return endings.return_to(run, stable)
    return roll_out(run, stable)


def fallback(run: Pass) -> str | None:
    """The revision to fall back on. When status.rollout was lost (or its stable revision
    deleted by hand), adopt what the cluster shows rather than start from nothing."""
    remembered, seen, desired = run.state.stable_revision, run.seen, run.desired
    if remembered in seen or (remembered and remembered == desired):
        return remembered  # (a stable revision at 0 replicas may not be created yet)
    if remembered is None and run.state.target_revision is not None:
        return None  # the first revision is still coming up: nothing proven yet
    if desired in seen and seen.available(desired) >= run.total:
        return desired
    return seen.most_available()


def first_revision(run: Pass) -> Split:
    """Nothing to protect: the desired revision takes every replica at once."""
    desired, prior = run.desired, run.state
    replicas = {r: 0 for r in run.seen.others(desired)} | {desired: run.total}
    if run.seen.available(desired) >= run.total:
        if prior.stable_revision != desired or prior.phase != "Stable":
            run.emit("Normal", "RolloutComplete", f"revision {run.seen.name(desired)} is stable")
        run.state = RolloutState(stable_revision=desired)
        return replicas, {desired: 100}
    ongoing = (
        prior.target_revision == desired
        and prior.stable_revision is None
        and prior.phase == "Progressing"
    )
    run.state = progress.progressed(run, prior if ongoing else progress.started(run))
    if run.state.reason is None and progress.past_deadline(run):
        # No older revision to go back to: keep trying, but say so once.
        reason, message = progress.stall_reason(run)
        run.state = replace(run.state, reason=reason, message=message)
        run.emit("Warning", "RolloutStalled", message)
    return replicas, {desired: 100}


def settle(run: Pass, stable: str) -> Split:
    """The desired revision is the stable one: a steady state, a scale change, or the
    spec set back during a rollout (traffic returns at once)."""
    prior = run.state
    if prior.target_revision not in (None, stable):
        run.emit(
            "Normal",
            "RolloutAbandoned",
            f"rollout of revision {run.seen.name(prior.target_revision)} abandoned; "
            f"revision {run.seen.name(stable)} serves again",
        )
    # The last rollout's analysis stays on show until the next one begins.
    kept = prior.analysis if prior.target_revision is None else ()
    run.state = RolloutState(stable_revision=stable, analysis=kept)
    return endings.return_to(run, stable)


def roll_out(run: Pass, stable: str) -> Split:
    """A rollout of the desired revision over the stable one: begun (or carried on), moved
    one step by its strategy, old pods making room, aborted past its deadline."""
    desired, prior, name = run.desired, run.state, run.seen.name
    if prior.target_revision != desired or prior.phase in ("Stable", "Aborted"):
        superseded = prior.target_revision
        message = (
            f"rolling out revision {name(desired)} over revision {name(stable)} "
            f"({run.policy.strategy})"
        )
        if superseded not in (None, stable, desired) and prior.phase != "Aborted":
            message += f"; the rollout of revision {name(superseded)} was superseded"
        run.emit("Normal", "RolloutStarted", message)
        prior = progress.started(run)
    run.state = progress.progressed(run, replace(prior, stable_revision=stable))

    if run.total == 0:  # nothing runs: nothing to protect
        return endings.complete(run, stable, {desired: 0, stable: 0})
    replicas, weights = STRATEGIES[run.policy.strategy](run, stable)
    if run.state.phase == "Stable":
        return replicas, weights
    making_room.make_room(run, replicas)
    if run.state.phase == "Progressing" and progress.past_deadline(run):
        return endings.abort(run, stable)
    return replicas, weights
