"""Making room on a full cluster (spec.rollout.whenFull: MakeRoom), as facts from the pod cache:
which pods of the desired revision the scheduler cannot place for lack of the GPU they ask for,
and which ready pods of older revisions hold that GPU where those could run.

Pure. The state machine decides how many old pods go and on which nodes
(rollout/making_room.py, from the facts `facts` gives it); the operator then marks those pods
(`chosen`, `DELETION_COST`) before it scales their Deployment down, so that the ReplicaSet
removes exactly them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .vocabulary import revision_of

# The ReplicaSet controller removes the pods of lowest cost first (among pods equally ready).
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
GIVE_UP_COST = "-1000"


def lacking(start: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The GPU need of a pod the scheduler left unplaced for lack of that very resource (its
    "Insufficient nvidia.com/gpu"), not for a label no node has or a taint."""
    need = start.get("gpu")
    scheduled = start.get("scheduled") or {}
    if start.get("node") or not need or scheduled.get("reason") != "Unschedulable":
        return None
    return need if f"Insufficient {need['resource']}" in scheduled.get("message", "") else None


def frees(start: Mapping[str, Any], need: Mapping[str, Any]) -> bool:
    """Whether this pod's going frees `need`'s resource where the needy pod may run: it is
    ready, holds that resource, and was placed under at least the node labels `need` asks for."""
    gpu = start.get("gpu") or {}
    labels = gpu.get("selector") or {}
    return (
        bool(start.get("ready") and start.get("node"))
        and gpu.get("resource") == need["resource"]
        and gpu.get("count", 0) > 0
        and all(labels.get(k) == v for k, v in (need.get("selector") or {}).items())
    )


def _starts(pods: Iterable[Mapping[str, Any]], revision: str | None) -> list[Mapping[str, Any]]:
    """The pods of `revision` that are not being deleted, by name."""
    mine = (
        p
        for p in pods
        if revision_of(p) == revision
        and "start" in p
        and not p["metadata"].get("deletionTimestamp")
    )
    return sorted(mine, key=lambda p: p["metadata"]["name"])


def need_of(pods: Iterable[Mapping[str, Any]], desired: str) -> Mapping[str, Any] | None:
    """What the desired revision's unplaced pods lack (the first one's need, by name)."""
    for pod in _starts(pods, desired):
        if (need := lacking(pod["start"])) is not None:
            return need
    return None


def facts(pods: Iterable[Mapping[str, Any]], revision: str | None, desired: str) -> dict[str, Any]:
    """The making-room fields of one revision's ObservedRevision: for the desired revision its
    unplaced pods and what each asks for; for an older one the nodes of its ready pods whose
    going would free that (one entry per pod, by node)."""
    pods = list(pods)
    need = need_of(pods, desired)
    if need is None:
        return {}
    if revision == desired:
        unplaced = sum(1 for p in _starts(pods, desired) if lacking(p["start"]) is not None)
        return {"unplaced": unplaced, "short_of": f"{need['count']} {need['resource']}"}
    nodes = sorted(p["start"]["node"] for p in _starts(pods, revision) if frees(p["start"], need))
    return {"room_on": tuple(nodes)}


def chosen(
    pods: Iterable[Mapping[str, Any]], revision: str, nodes: Iterable[str], desired: str
) -> list[str]:
    """The names of the pods of `revision` to give up: one that frees the desired revision's
    need on each of `nodes` (the state machine's choice), the first by name."""
    pods = list(pods)
    need = need_of(pods, desired)
    if need is None:
        return []
    free = [
        (p["start"]["node"], p["metadata"]["name"])
        for p in _starts(pods, revision)
        if frees(p["start"], need)
    ]
    picked: list[str] = []
    for node in nodes:
        name = next((n for where, n in free if where == node and n not in picked), None)
        if name is not None:
            picked.append(name)
    return picked


def deletion_cost_patch() -> dict[str, Any]:
    return {"metadata": {"annotations": {DELETION_COST: GIVE_UP_COST}}}
