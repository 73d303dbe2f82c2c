"""Making room (whenFull: MakeRoom): whether it applies, the budget it moves within, which
ready old pods a move gives up for the new revision's pending pods, and the message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..vocabulary import one_line
from .context import Pass


def budget(run: Pass) -> tuple[int, int]:
    """(surge, unavailable): the policy's, or, while old pods make room, no surge (a surge
    pod would find no GPU either) and one pod at least that may go."""
    surge, unavailable = run.policy.budget
    return (0, max(unavailable, 1)) if wanted(run) else (surge, unavailable)


def wanted(run: Pass) -> bool:
    """MakeRoom applies: a rollout (not its abort, not BlueGreen, which needs room for both
    revisions by design) whose new pods the scheduler cannot place for lack of their GPU,
    while ready old pods hold that GPU where the new ones could use it."""
    seen, desired = run.seen, run.desired
    return (
        run.policy.when_full == "MakeRoom"
        and run.policy.strategy != "BlueGreen"
        and run.state.phase in ("Progressing", "Paused")
        and run.state.stable_revision not in (None, desired)
        and seen.unplaced(desired) > 0
        and any(seen.room_on(r) for r in seen.others(desired))
    )


def make_room(run: Pass, replicas: Mapping[str, int]) -> None:
    """Which ready old pods this move gives up for the new revision's pending pods, and
    where. Giving one up is progress: the deadline then counts from it, while its GPU is
    freed and the pending pod starts on it. The message stands until the pods are placed."""
    if not wanted(run):
        if run.state.making_room is not None:
            run.state = replace(run.state, making_room=None)
        return
    for r in run.seen.others(run.desired):
        taken = run.seen.ready(r) - replicas.get(r, 0)
        if taken > 0 and run.seen.room_on(r):
            run.give_up[r] = run.seen.room_on(r)[:taken]
    if run.give_up:
        run.state = replace(run.state, progress_at=run.now, making_room=message(run))


def message(run: Pass) -> str:
    name, desired = run.seen.name, run.desired
    parts = []
    for r, nodes in run.give_up.items():
        pods, where = len(nodes), sorted(set(nodes))
        parts.append(
            f"revision {name(r)} gives up {pods} pod{'s' * (pods != 1)} on "
            f"node{'s' * (len(where) != 1)} {', '.join(where)}"
        )
    pending = run.seen.unplaced(desired)
    need = run.seen.short_of(desired)
    return one_line(
        f"making room: {'; '.join(parts)}{f' ({need})' if need else ''} for revision "
        f"{name(desired)}'s pending pod{'s' * (pending != 1)}"
    )
