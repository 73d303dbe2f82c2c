"""Pure status computation: the children as observed -> the ModelService's status.

Conditions follow metav1.Condition: `lastTransitionTime` moves only when `status` flips, and
messages are built only from stable facts (counts, the scheduler's own reason), so computing the
status twice from the same world yields the same dict and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import budget, offers, phases, render
from .routing import RouteReport
from .vocabulary import MAKING_ROOM, Cause, DeploymentView, revision_of

# Container waiting reasons that mean the revision will not come up without a change.
FAILING_WAIT_REASONS = phases.FAILING_WAIT_REASONS
# What pods wait for while old pods make room for them: the making room explains it.
ROOM_FOR = frozenset({"WaitingForGPU", "Unschedulable"})


@dataclass(frozen=True)
class Wanted:
    """What the spec asks for, as the status reports on it."""

    revision: str  # the revision the conditions are about
    total: int
    max_unavailable: int = 0
    make_room: bool = False  # rollout.whenFull MakeRoom (budget.allowed_unavailable)
    url: str = ""
    grpc_address: str | None = None


@dataclass(frozen=True)
class Children:
    """The ModelService's children as the watch caches saw them."""

    deployments: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]] = ()
    offer: str | None = (
        None  # what the nodes offer a pod waiting for a GPU (reconcilers/gpu_offer.describe)
    )


def deployment_failure(deployment: Mapping[str, Any]) -> Cause | None:
    for cond in deployment.get("status", {}).get("conditions", []):
        if cond["type"] == "ReplicaFailure" and cond["status"] == "True":
            return Cause.failed(cond.get("reason", "ReplicaFailure"), cond.get("message", ""))
        if cond["type"] == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Cause.failed("ProgressDeadlineExceeded", cond.get("message", ""))
    return None


def start_failure(start: Mapping[str, Any], offer: str | None) -> Cause | None:
    """A pod's start that will not finish without a change (see phases); a GPU pod the
    scheduler cannot place is WaitingForGPU, with what the nodes offer."""
    scheduled = start.get("scheduled") or {}
    if not start.get("node") and scheduled.get("reason") == "Unschedulable":
        if start.get("gpu"):
            said = offer or offers.head(start["gpu"])
            return Cause.failed(
                "WaitingForGPU", f"{said}; scheduler: {scheduled.get('message', '')}"
            )
        return Cause.failed("Unschedulable", scheduled.get("message", ""))
    found = phases.failure(start)
    return Cause.failed(found.reason, found.message) if found else None


def pod_failure(pods: Iterable[Mapping[str, Any]], offer: str | None = None) -> Cause | None:
    """The first reason a pod of the revision is not coming up, in a stable order."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if (start := pod.get("start")) is not None:
            if found := start_failure(start, offer):
                return found
            continue
        status = pod.get("status", {})
        for cond in status.get("conditions", []):
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return Cause.failed("Unschedulable", cond.get("message", ""))
        for container in status.get("containerStatuses", []):
            waiting = container.get("state", {}).get("waiting") or {}
            if waiting.get("reason") in FAILING_WAIT_REASONS:
                # A crashing container's own last words (its termination message) say why;
                # the back-off text names the pod and changes with every restart.
                last = (container.get("lastState") or {}).get("terminated") or {}
                message = (
                    last.get("message", "").strip()
                    or waiting.get("message", "")
                    or f"container {container['name']}"
                )
                return Cause.failed(waiting["reason"], message)
    return None


def condition(
    kind: str,
    ok: bool | str,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping,
    now: str,
) -> dict[str, Any]:
    status = ok if isinstance(ok, str) else ("True" if ok else "False")
    old = previous.get(kind)
    changed = old is None or old.get("status") != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now if changed else old["lastTransitionTime"],
    }


def compute(
    *,
    owner: render.Owner,
    wanted: Wanted,
    children: Children,
    generation: int,
    previous: Mapping[str, Any],
    now: str,
    cause: Cause | None = None,
    weights: Mapping[str, int] | None = None,
    rollout: Mapping[str, Any] | None = None,
    routed: RouteReport | None = None,
) -> dict[str, Any]:
    """The whole status subresource. `cause` is what the rollout decided (what it waits for, or
    why it was given up) or a failure found before it (an invalid spec, a refused write);
    `routed` what the HTTPRoute's Gateway says (trafficRouting gateway-api)."""
    views = sorted((DeploymentView.of(d) for d in children.deployments), key=lambda v: v.name)
    current = next((v for v in views if v.revision == wanted.revision), None)
    total = wanted.total
    others_gone = all(v.replicas == 0 and v.ready == 0 for v in views if v is not current)
    done = (
        current is not None
        and current.up_to_date
        and current.replicas == total
        and current.available >= total
        and others_gone
    )
    if (cause is None or cause.kind != "failed") and current is not None and not done:
        # A failing pod outranks a pause; a pause outranks the pods' start phase.
        found = revision_cause(current, children)
        if found is not None and found.reason in ROOM_FOR and cause and cause.reason == MAKING_ROOM:
            found = None  # the pod the old ones make room for
        cause = found or cause or start_cause(wanted, current, children)
    old = {c["type"]: c for c in previous.get("conditions", []) or []}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [
            condition(kind, ok, reason, message, generation, old, now)
            for kind, ok, reason, message in conditions(
                wanted,
                views,
                current,
                done,
                cause,
                budget.allowed_unavailable(wanted.max_unavailable, wanted.make_room, rollout),
            )
        ]
        + (
            [condition("Routed", *routed.fields, generation, old, now)]
            if routed is not None
            else []
        ),
        "replicas": sum(v.replicas for v in views),
        "readyReplicas": sum(v.ready for v in views),
        "selector": render.selector_string(owner.name),
        "url": wanted.url,
        **({"grpcAddress": wanted.grpc_address} if wanted.grpc_address else {}),
        "revisions": [
            {
                "name": v.name,
                "revision": v.revision,
                **({"version": v.version} if v.version else {}),
                "weight": (weights or {}).get(v.revision, 0),
                "replicas": v.replicas,
                "readyReplicas": v.ready,
                "phase": phase(v, wanted.revision, done),
            }
            for v in views
        ],
    }
    if rollout is not None:
        status["rollout"] = dict(rollout)
    return status


def revision_cause(current: DeploymentView, children: Children) -> Cause | None:
    """What the pods of the revision being brought up say: why they do not come up."""
    pods = [p for p in children.pods if revision_of(p) == current.revision]
    deployment = next(d for d in children.deployments if d["metadata"]["name"] == current.name)
    return pod_failure(pods, children.offer) or deployment_failure(deployment)


def start_cause(wanted: Wanted, current: DeploymentView, children: Children) -> Cause | None:
    """Where the revision's pods are in their start (phases), while they come up."""
    starts = (
        p["start"] for p in children.pods if revision_of(p) == current.revision and "start" in p
    )
    starting = phases.revision_start(starts)
    if starting is None:
        return None
    return Cause.waiting(
        starting.phase, f"{replica_counts(wanted, current)}; {phases.message(starting)}"
    )


def replica_counts(wanted: Wanted, current: DeploymentView | None) -> str:
    available = current.available if current else 0
    return f"{available}/{wanted.total} replicas of revision {wanted.revision} available"


Condition = tuple[str, bool, str, str]  # type, status, reason, message


def conditions(
    wanted: Wanted,
    views: Sequence[DeploymentView],
    current: DeploymentView | None,
    done: bool,
    cause: Cause | None,
    unavailable: int = 0,
) -> list[Condition]:
    """Ready, Available, Progressing and Degraded, each from the same facts: whether the wanted
    revision is done, and the one cause (failed, or waited for) when it is not. Ready says the
    service answers at the capacity it promises (every replica ready, whichever revision: a
    paused canary serves); Progressing says where a rollout is. `unavailable`: the ready pods
    Available may lack (budget.allowed_unavailable)."""
    total = wanted.total
    counts = replica_counts(wanted, current)
    failed = cause is not None and cause.kind == "failed"
    pending = cause or Cause.waiting("RolloutInProgress", counts)
    ready_total = sum(v.ready for v in views)

    if not failed and total == 0:
        ready: Condition = ("Ready", False, "ScaledToZero", "spec.replicas is 0")
    elif not failed and done:
        ready = ("Ready", True, "Ready", counts)
    elif not failed and ready_total >= total:
        serving = f"{ready_total} replicas ready for {total}; a rollout is under way"
        ready = ("Ready", True, "Ready", f"{serving} (see Progressing)")
    else:
        ready = ("Ready", False, pending.reason, pending.message)

    floor = max(1, total - unavailable)
    if total > 0 and ready_total >= floor:
        available = ("Available", True, "MinimumReplicasAvailable", f"{ready_total} replicas ready")
    else:
        available = (
            "Available",
            False,
            "MinimumReplicasUnavailable",
            f"{ready_total}/{floor} replicas ready",
        )

    if done or total == 0:
        progressing = ("Progressing", False, "RolloutComplete", counts)
    else:
        progressing = ("Progressing", not failed, pending.reason, pending.message)

    if failed:
        degraded = ("Degraded", True, pending.reason, pending.message)
    else:
        degraded = ("Degraded", False, "AsExpected", "")
    return [ready, available, progressing, degraded]


def cause_told(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The condition whose reason a status's Event tells: Ready's, but Progressing's while a
    rollout moves under a Ready that serves (a canary pause, making room); None without
    conditions."""
    found = {c["type"]: c for c in status.get("conditions") or []}
    ready, progressing = found.get("Ready"), found.get("Progressing")
    if ready and ready["status"] == "True" and progressing and progressing["status"] == "True":
        return progressing
    return ready


def phase(view: DeploymentView, desired: str, done: bool) -> str:
    if view.revision == desired:
        return "Serving" if done else "Progressing"
    return "Serving" if view.replicas > 0 else "Retired"
