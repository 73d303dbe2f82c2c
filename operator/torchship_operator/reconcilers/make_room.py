"""MakeRoom's own reconcile: the old pods a scale-down gives up for the new revision's
pending ones, marked so that the ReplicaSet removes exactly those."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .. import render, room
from ..kube import Kube, Refused
from .common import Observed, Outcome

log = logging.getLogger("torchship.reconcile")


async def give_up_pods(
    owner: render.Owner,
    revision: str,
    nodes: Sequence[str],
    desired: str,
    observed: Observed,
    kube: Kube,
    outcome: Outcome,
) -> None:
    """Mark the pods the decision gives up to make room (one on each of `nodes`) so that
    the ReplicaSet removes those when its Deployment is scaled down. Best effort: refused, the
    ReplicaSet chooses by its own ranking, and the rollout goes on."""
    for name in room.chosen(observed.pods, revision, nodes, desired):
        try:
            await kube.patch_pod(owner.namespace, name, room.deletion_cost_patch())
        except Refused as refused:
            log.warning("pod %s/%s not marked to give up: %s", owner.namespace, name, refused)
            continue
        outcome.writes.append(f"pod/{name}")
