"""How a rollout ends: complete (the desired revision is stable), aborted (traffic back on the
stable revision, the cause kept), and the way back to the stable revision both share."""

from __future__ import annotations

from dataclasses import replace

from ..vocabulary import MESSAGE_LIMIT, one_line
from . import moves, progress, step_analysis
from .context import Pass, Split
from .state import RolloutState


def complete(run: Pass, stable: str, replicas: dict[str, int]) -> Split:
    desired, name = run.desired, run.seen.name
    run.emit(
        "Normal", "RolloutComplete", f"revision {name(desired)} is stable (was {name(stable)})"
    )
    run.state = RolloutState(stable_revision=desired, analysis=run.state.analysis)
    return replicas, {desired: 100}


def abort(run: Pass, stable: str, analysis_failed: bool = False) -> Split:
    reason, why = step_analysis.failure(run) if analysis_failed else progress.stall_reason(run)
    # The cause can be long (a scheduler message): the outcome must survive the cut.
    outcome = f"; traffic went back to revision {run.seen.name(stable)}"
    message = one_line(why, MESSAGE_LIMIT - len(outcome)) + outcome
    run.state = replace(
        run.state,
        phase="Aborted",
        aborted_revision=run.desired,
        paused_at=None,
        reason=reason,
        message=message,
        making_room=None,
    )
    # An analysis failure's Event carries its own reason, the one the conditions show.
    run.emit("Warning", reason if analysis_failed else "RolloutAborted", message)
    return return_to(run, stable)


def return_to(run: Pass, stable: str) -> Split:
    """Everything back on `stable`. RollingUpdate goes back the way it came (the others
    may hold most of the pods); Canary and BlueGreen switch at once, since the stable
    revision still holds nearly all of them."""
    targets = {r: 0 for r in run.seen.others(stable)} | {stable: run.total}
    if run.policy.strategy == "RollingUpdate":
        replicas = moves.transition(run, targets, stable)
        return replicas, moves.by_ready(run, replicas, stable)
    return targets, {stable: 100}
