"""Pure status computation: the children as observed -> the ModelService's status.

Conditions follow metav1.Condition: `lastTransitionTime` moves only when `status` flips, and
messages are built only from stable facts (counts, the scheduler's own reason), so computing the
status twice from the same world yields the same dict and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import render
from .vocabulary import DeploymentView, revision_of

# Container waiting reasons that mean the revision will not come up without a change.
FAILING_WAIT_REASONS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


def deployment_failure(deployment: Mapping[str, Any]) -> Failure | None:
    for cond in deployment.get("status", {}).get("conditions", []):
        if cond["type"] == "ReplicaFailure" and cond["status"] == "True":
            return Failure(cond.get("reason", "ReplicaFailure"), cond.get("message", ""))
        if cond["type"] == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Failure("ProgressDeadlineExceeded", cond.get("message", ""))
    return None


def pod_failure(pods: Iterable[Mapping[str, Any]]) -> Failure | None:
    """The first reason a pod of the revision is not coming up, in a stable order."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        status = pod.get("status", {})
        for cond in status.get("conditions", []):
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return Failure("Unschedulable", cond.get("message", ""))
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
                return Failure(waiting["reason"], message)
    return None


def condition(
    kind: str, ok: bool, reason: str, message: str, generation: int, previous: Mapping, now: str
) -> dict[str, Any]:
    status = "True" if ok else "False"
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
    url: str,
    generation: int,
    desired_revision: str,
    total: int,
    max_unavailable: int,
    weights: Mapping[str, int],
    deployments: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any],
    now: str,
    rollout: Mapping[str, Any] | None = None,
    failure: Failure | None = None,
    step: Failure | None = None,
    grpc_address: str | None = None,
) -> dict[str, Any]:
    """The whole status subresource. `failure` is a known cause (invalid spec, aborted rollout);
    `step` what an unfinished rollout waits for (a canary pause, a promotion), when it says."""
    views = sorted((DeploymentView.of(d) for d in deployments), key=lambda v: v.name)
    current = next((v for v in views if v.revision == desired_revision), None)
    ready_total = sum(v.ready for v in views)
    others_gone = all(v.replicas == 0 and v.ready == 0 for v in views if v is not current)
    done = (
        current is not None
        and current.up_to_date
        and current.replicas == total
        and current.available >= total
        and others_gone
    )
    if failure is None and current is not None and not done:
        revision_pods = [p for p in pods if revision_of(p) == desired_revision]
        deployment = next(d for d in deployments if d["metadata"]["name"] == current.name)
        failure = pod_failure(revision_pods) or deployment_failure(deployment)

    old = {c["type"]: c for c in previous.get("conditions", []) or []}
    available_now = current.available if current else 0
    counts = f"{available_now}/{total} replicas of revision {desired_revision} available"

    if failure is not None:
        ready = (False, failure.reason, failure.message)
    elif total == 0:
        ready = (False, "ScaledToZero", "spec.replicas is 0")
    elif done:
        ready = (True, "Ready", counts)
    elif step is not None:
        ready = (False, step.reason, step.message)
    else:
        ready = (False, "RolloutInProgress", counts)
    available_floor = max(1, total - max_unavailable)
    available = (
        (True, "MinimumReplicasAvailable", f"{ready_total} replicas ready")
        if total > 0 and ready_total >= available_floor
        else (
            False,
            "MinimumReplicasUnavailable",
            f"{ready_total}/{available_floor} replicas ready",
        )
    )
    if done or total == 0:
        progressing = (False, "RolloutComplete", counts)
    elif failure is not None:
        progressing = (False, failure.reason, failure.message)
    elif step is not None:
        progressing = (True, step.reason, step.message)
    else:
        progressing = (True, "RolloutInProgress", counts)
    degraded = (True, failure.reason, failure.message) if failure else (False, "AsExpected", "")

    conditions = [
        condition(kind, *values, generation, old, now)
        for kind, values in (
            ("Ready", ready),
            ("Available", available),
            ("Progressing", progressing),
            ("Degraded", degraded),
        )
    ]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "replicas": sum(v.replicas for v in views),
        "readyReplicas": ready_total,
        "selector": render.selector_string(owner.name),
        "url": url,
        **({"grpcAddress": grpc_address} if grpc_address else {}),
        "revisions": [
            {
                "name": v.name,
                "revision": v.revision,
                **({"version": v.version} if v.version else {}),
                "weight": weights.get(v.revision, 0),
                "replicas": v.replicas,
                "readyReplicas": v.ready,
                "phase": phase(v, desired_revision, done),
            }
            for v in views
        ],
    }
    if rollout is not None:
        status["rollout"] = dict(rollout)
    return status


def phase(view: DeploymentView, desired: str, done: bool) -> str:
    if view.revision == desired:
        return "Serving" if done else "Progressing"
    return "Serving" if view.replicas > 0 else "Retired"
