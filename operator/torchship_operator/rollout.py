"""The rollout state machine: a pure function from what is wanted and what is observed to
how many replicas each revision gets, how traffic is weighted, and when to look again.

    plan(policy, desired, total, state, revisions, now, promoted_step) -> Decision

No clock, no client: `now` is an argument and the state is persisted by the operator in
`status.rollout`, so a restarted operator continues where the last one stopped. Events are
emitted only on transitions, so calling `plan` again with the same inputs emits nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Phase = Literal["Stable", "Progressing", "Paused", "Aborted"]


@dataclass(frozen=True)
class Step:
    weight: int
    pause_seconds: int | None  # None: wait until promoted


@dataclass(frozen=True)
class RolloutPolicy:
    strategy: Literal["RollingUpdate", "Canary", "BlueGreen"] = "RollingUpdate"
    steps: tuple[Step, ...] = ()
    max_surge: int = 1
    max_unavailable: int = 0
    progress_deadline_seconds: int = 600
    revision_history_limit: int = 3

    @classmethod
    def from_spec(cls, spec: Any) -> RolloutPolicy:
        return cls(
            strategy=spec.strategy,
            steps=tuple(Step(s.weight, s.pause_seconds) for s in spec.steps or ()),
            max_surge=spec.max_surge,
            max_unavailable=spec.max_unavailable,
            progress_deadline_seconds=spec.progress_deadline_seconds,
            revision_history_limit=spec.revision_history_limit,
        )


@dataclass(frozen=True)
class ObservedRevision:
    revision: str
    replicas: int  # what its Deployment asks for now
    available: int
    created: str = ""  # creationTimestamp (RFC 3339 sorts as text)

    @classmethod
    def from_deployment(cls, deployment: Mapping[str, Any]) -> ObservedRevision:
        meta = deployment["metadata"]
        return cls(
            revision=meta["labels"]["torchship.dev/revision"],
            replicas=deployment.get("spec", {}).get("replicas", 0),
            available=deployment.get("status", {}).get("availableReplicas", 0),
            created=meta.get("creationTimestamp", ""),
        )


@dataclass(frozen=True)
class RolloutState:
    """Persisted in status.rollout (camelCase keys)."""

    stable: str | None = None
    target: str | None = None
    phase: Phase = "Stable"
    step: int = 0
    started_at: float | None = None
    step_started_at: float | None = None
    aborted: str | None = None
    reason: str | None = None
    message: str = ""

    KEYS = {
        "stable": "stableRevision",
        "target": "targetRevision",
        "phase": "phase",
        "step": "step",
        "started_at": "startedAt",
        "step_started_at": "stepStartedAt",
        "aborted": "abortedRevision",
        "reason": "reason",
        "message": "message",
    }

    def to_dict(self) -> dict[str, Any]:
        return {self.KEYS[k]: v for k, v in asdict(self).items() if v not in (None, "")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RolloutState | None:
        if not data:
            return None
        return cls(**{k: data[wire] for k, wire in cls.KEYS.items() if wire in data})


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    replicas: dict[str, int]
    weights: dict[str, int]
    state: RolloutState
    requeue_after: float | None = None
    events: tuple[Event, ...] = ()
    prune: tuple[str, ...] = ()


@dataclass
class _Draft:
    """Mutable working copy while planning."""

    state: RolloutState
    events: list[Event] = field(default_factory=list)

    def to(self, event: Event | None = None, **changes: Any) -> None:
        self.state = replace(self.state, **changes)
        if event:
            self.events.append(event)


def plan(
    *,
    policy: RolloutPolicy,
    desired: str,
    total: int,
    state: RolloutState | None,
    revisions: Sequence[ObservedRevision],
    now: float,
    promoted_step: int | None = None,
) -> Decision:
    observed = {r.revision: r for r in revisions}
    draft = _Draft(state or RolloutState())
    stable = draft.state.stable if draft.state.stable in observed else None

    def available(revision: str) -> int:
        return observed[revision].available if revision in observed else 0

    # Nothing to protect: the first revision (or the stable one vanished) takes everything.
    if stable is None or stable == desired:
        if draft.state.target not in (None, desired) and stable == desired:
            draft.events.append(
                Event(
                    "Normal",
                    "RolledBack",
                    f"rollout of {draft.state.target} abandoned; {desired} serves again",
                )
            )
        done = total == 0 or available(desired) >= total
        if done and draft.state.stable != desired:
            draft.events.append(Event("Normal", "RolloutComplete", f"revision {desired} serves"))
        draft.to(
            stable=desired if done else draft.state.stable if stable else None,
            target=None if done else desired,
            phase="Stable" if done else "Progressing",
            step=0,
            started_at=None if done else draft.state.started_at or now,
            step_started_at=None,
            aborted=None,
            reason=None,
            message="",
        )
        return _decide(policy, draft, {desired: total}, {desired: 100}, observed, desired, now)

    # A different revision is wanted than the one serving.
    if draft.state.phase == "Aborted" and draft.state.aborted == desired:
        return _decide(
            policy, draft, {stable: total, desired: 0}, {stable: 100}, observed, desired, now
        )
    if draft.state.target != desired:
        draft.to(
            Event(
                "Normal", "RolloutStarted", f"rolling out revision {desired} ({policy.strategy})"
            ),
            target=desired,
            phase="Progressing",
            step=0,
            started_at=now,
            step_started_at=now,
            aborted=None,
            reason=None,
            message="",
        )

    deadline = (draft.state.started_at or now) + policy.progress_deadline_seconds
    if policy.strategy == "Canary":
        replicas, weights, finished = _canary(
            policy, draft, desired, stable, total, available, now, promoted_step
        )
    elif policy.strategy == "BlueGreen":
        replicas, weights, finished = _blue_green(desired, stable, total, available)
    else:
        replicas, weights, finished = _rolling(policy, desired, stable, total, observed)

    if finished:
        draft.to(
            Event("Normal", "RolloutComplete", f"revision {desired} serves; {stable} retired"),
            stable=desired,
            target=None,
            phase="Stable",
            step=0,
            started_at=None,
            step_started_at=None,
        )
        return _decide(
            policy, draft, {desired: total, stable: 0}, {desired: 100}, observed, desired, now
        )
    if now >= deadline and draft.state.phase != "Paused":
        message = (
            f"revision {desired} was not available within {policy.progress_deadline_seconds}s; "
            f"traffic is back on {stable}"
        )
        draft.to(
            Event("Warning", "RolloutAborted", message),
            phase="Aborted",
            aborted=desired,
            target=desired,
            reason="ProgressDeadlineExceeded",
            message=message,
        )
        return _decide(
            policy, draft, {stable: total, desired: 0}, {stable: 100}, observed, desired, now
        )
    return _decide(policy, draft, replicas, weights, observed, desired, now, deadline)


def _canary(policy, draft, desired, stable, total, available, now, promoted_step):
    step_index = min(draft.state.step, len(policy.steps))
    while step_index < len(policy.steps):
        step = policy.steps[step_index]
        canary = total if step.weight >= 100 else max(1, round(total * step.weight / 100))
        base = 0 if step.weight >= 100 else max(total - canary, 1 if total >= 2 else 0)
        if available(desired) < canary:
            draft.to(phase="Progressing", step=step_index)
            return (
                {desired: canary, stable: base},
                {desired: step.weight, stable: 100 - step.weight},
                False,
            )
        started = draft.state.step_started_at or now
        if step.pause_seconds is None:
            if promoted_step is None or promoted_step < step_index:
                draft.to(
                    phase="Paused",
                    step=step_index,
                    reason="AwaitingPromotion",
                    message=f"step {step_index} ({step.weight}%) waits for "
                    f"spec.rollout.promotedStep >= {step_index}",
                )
                return (
                    {desired: canary, stable: base},
                    {desired: step.weight, stable: 100 - step.weight},
                    False,
                )
        elif now < started + step.pause_seconds:
            draft.to(phase="Progressing", step=step_index)
            return (
                {desired: canary, stable: base},
                {desired: step.weight, stable: 100 - step.weight},
                False,
            )
        step_index += 1
        draft.to(
            Event(
                "Normal", "CanaryStepCompleted", f"step {step_index - 1} ({step.weight}%) completed"
            ),
            step=step_index,
            step_started_at=now,
            phase="Progressing",
            reason=None,
            message="",
        )
    # Past the last step: everything to the new revision, the old one goes once it is ready.
    if available(desired) >= total:
        return {desired: total, stable: 0}, {desired: 100}, True
    return {desired: total, stable: total}, {desired: 100, stable: 0}, False


def _blue_green(desired, stable, total, available):
    if available(desired) >= total:
        return {desired: total, stable: 0}, {desired: 100}, True
    return {desired: total, stable: total}, {stable: 100, desired: 0}, False


def _rolling(policy, desired, stable, total, observed):
    new = observed.get(desired)
    old = [r for r in observed.values() if r.revision != desired]
    new_available = new.available if new else 0
    old_replicas = sum(r.replicas for r in old)
    old_available = sum(r.available for r in old)
    if new_available >= total and old_replicas == 0:
        return {desired: total}, {desired: 100}, True
    # Scale old down by what availability allows, then new up by what surge allows.
    min_available = total - policy.max_unavailable
    can_remove = max(0, new_available + min(old_available, old_replicas) - min_available)
    remaining_old = max(0, old_replicas - can_remove)
    new_replicas = max(
        new.replicas if new else 0, min(total, total + policy.max_surge - remaining_old)
    )
    replicas = {desired: new_replicas}
    # Take replicas from the oldest revisions first; the stable one goes last.
    to_remove = old_replicas - remaining_old
    for revision in sorted(old, key=lambda r: (r.revision == stable, r.created)):
        take = min(revision.replicas, to_remove)
        replicas[revision.revision] = revision.replicas - take
        to_remove -= take
    serving = sum(replicas.values()) or 1
    weights = {r: round(100 * n / serving) for r, n in replicas.items() if n}
    return replicas, weights, False


def _decide(policy, draft, replicas, weights, observed, desired, now, deadline=None) -> Decision:
    state = draft.state
    keep = {desired, state.stable} - {None}
    retired = sorted(
        (r for r in observed.values() if r.revision not in keep and r.revision not in replicas),
        key=lambda r: r.created,
        reverse=True,
    )
    # Retired revisions stay, scaled to zero, up to the history limit: a rollback is a scale-up.
    for r in retired:
        replicas.setdefault(r.revision, 0)
    prune = tuple(r.revision for r in retired[policy.revision_history_limit :])
    for revision in prune:
        replicas.pop(revision, None)
    requeue = None
    if state.phase == "Progressing":
        wakeups = [deadline] if deadline is not None else []
        if policy.strategy == "Canary" and state.step < len(policy.steps):
            pause = policy.steps[state.step].pause_seconds
            if pause is not None and state.step_started_at is not None:
                wakeups.append(state.step_started_at + pause)
        future = [w - now for w in wakeups if w is not None and w > now]
        requeue = min(future) if future else None
    return Decision(
        replicas=dict(replicas),
        weights=weights,
        state=state,
        requeue_after=requeue,
        events=tuple(draft.events),
        prune=prune,
    )
