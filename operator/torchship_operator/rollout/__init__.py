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

A pass is one context (`context.Pass`) moved along by parts with one job each:

    paths          which path: the first revision, settle, a rollout, an aborted one held
    rolling, canary, blue_green
                   the strategies, each by its name; one move of a rollout in progress
    endings        complete, abort, and the way back to the stable revision
    step_analysis  a canary step's measurements: counted, judged, summed up
    making_room    whenFull MakeRoom: its budget, the old pods given up, its message
    progress       a rollout's start, its deadline, why it stalled
    moves          one move within the budget; the split by ready pods
    decision       what the operator is handed: backends, prunes, requeue, cause
"""

from __future__ import annotations

from collections.abc import Sequence

from ..analysis import Measurement
from ..revisions import ObservedRevision, Revisions
from . import paths
from .context import Pass
from .decision import Decision, decide
from .policy import RolloutPolicy, Step, Strategy, WhenFull
from .progress import failure_reason
from .state import Phase, RolloutState, format_time
from .step_analysis import summary as analysis_summary

__all__ = [
    "Decision",
    "ObservedRevision",
    "Phase",
    "RolloutPolicy",
    "RolloutState",
    "Step",
    "Strategy",
    "WhenFull",
    "analysis_summary",
    "failure_reason",
    "format_time",
    "plan",
]


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
    run = Pass(policy, desired, max(0, total), seen, now, promoted_step, state, measurement)
    replicas, weights = paths.take(run)
    return decide(run, replicas, weights)
