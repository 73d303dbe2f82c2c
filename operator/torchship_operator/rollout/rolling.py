"""RollingUpdate: the desired revision takes over pod by pod, within maxSurge and
maxUnavailable; the traffic follows the ready pods."""

from __future__ import annotations

from . import endings, moves
from .context import Pass, Split


def advance(run: Pass, stable: str) -> Split:
    targets = {r: 0 for r in run.seen.others(run.desired)} | {run.desired: run.total}
    replicas = moves.transition(run, targets, stable)
    if moves.done(run, replicas):
        return endings.complete(run, stable, replicas)
    return replicas, moves.by_ready(run, replicas, stable)
