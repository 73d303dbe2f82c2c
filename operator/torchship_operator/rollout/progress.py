"""Progress: when a rollout began, what counts as progress, its deadline, and why it stalled."""

from __future__ import annotations

from dataclasses import replace

from ..vocabulary import one_line
from .context import Pass
from .state import RolloutState


def started(run: Pass) -> RolloutState:
    """A rollout of the desired revision beginning now."""
    return RolloutState(
        target_revision=run.desired,
        phase="Progressing",
        started_at=run.now,
        progress_at=run.now,
        target_ready=run.seen.ready(run.desired),
    )


def progressed(run: Pass, state: RolloutState) -> RolloutState:
    """More ready pods on the target than ever before in this rollout is progress."""
    ready = run.seen.ready(run.desired)
    if ready > state.target_ready:
        return replace(state, target_ready=ready, progress_at=run.now)
    return state


def past_deadline(run: Pass) -> bool:
    since = run.state.progress_at if run.state.progress_at is not None else run.now
    return run.now - since >= run.policy.progress_deadline_seconds


def deadline(run: Pass) -> float | None:
    """When the deadline passes, while one applies: a first revision that stalled keeps
    trying with no deadline left (RolloutStalled said so once)."""
    state = run.state
    applies = state.stable_revision is not None or state.reason is None
    if state.phase == "Progressing" and applies and state.progress_at is not None:
        return state.progress_at + run.policy.progress_deadline_seconds
    return None


def stall_reason(run: Pass) -> tuple[str, str]:
    failure = run.seen.failure(run.desired)
    detail = f": {failure}" if failure else ""
    return failure_reason(failure) or "ProgressDeadlineExceeded", one_line(
        f"revision {run.seen.name(run.desired)} made no progress for "
        f"{run.policy.progress_deadline_seconds:g}s{detail}"
    )


def failure_reason(failure: str | None) -> str | None:
    """The CamelCase reason a failure starts with ("Unschedulable: 0/4 nodes ..."), for
    conditions; "RevisionFailed" when it starts with none."""
    if not failure:
        return None
    head = failure.split(":", 1)[0].strip()
    return head if head.isalnum() and head[:1].isupper() else "RevisionFailed"
