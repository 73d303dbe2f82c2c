"""BlueGreen: the new revision comes up in full beside the stable one; traffic switches at
once when all of it is available."""

from __future__ import annotations

from . import endings
from .context import Pass, Split


def advance(run: Pass, stable: str) -> Split:
    desired, total = run.desired, run.total
    replicas = {r: 0 for r in run.seen.others(desired, stable)}
    if run.seen.available(desired) >= total:
        return endings.complete(run, stable, replicas | {desired: total, stable: 0})
    return replicas | {stable: total, desired: total}, {stable: 100}
