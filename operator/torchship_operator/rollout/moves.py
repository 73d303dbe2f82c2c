"""The moves every path makes: one step toward target replicas within the budget, the
traffic split by ready pods, and whether the desired revision has taken over."""

from __future__ import annotations

from collections.abc import Mapping

from .. import budget
from . import making_room
from .context import Pass


def transition(run: Pass, targets: Mapping[str, int], stable: str) -> dict[str, int]:
    """One move toward `targets` within the budget (budget.transition)."""
    surge, unavailable = making_room.budget(run)
    seen = run.seen
    return budget.transition(
        targets,
        decided={r: seen.spec(r) for r in targets},
        ready={r: seen.ready(r) for r in targets},
        created=seen.created(targets),
        stable=stable,
        desired=run.desired,
        total=run.total,
        surge=surge,
        unavailable=unavailable,
    )


def by_ready(run: Pass, replicas: Mapping[str, int], stable: str) -> dict[str, int]:
    ready = {r: run.seen.ready(r) for r in replicas}
    return budget.weights_by_ready(replicas, ready, stable, run.desired)


def done(run: Pass, replicas: Mapping[str, int]) -> bool:
    """The desired revision holds every replica, all available, and nothing else runs."""
    desired = run.desired
    return (
        replicas.get(desired, 0) == run.total
        and run.seen.available(desired) >= run.total
        and all(n == 0 for r, n in replicas.items() if r != desired)
    )
