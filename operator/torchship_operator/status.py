"""Pure status computation: the children as observed -> the ModelService's status.

Conditions follow metav1.Condition: `lastTransitionTime` moves only when `status` flips, and
messages are built only from stable facts (counts, the scheduler's own reason), so computing the
status twice from the same world yields the same dict and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import offers, phases, render

# Container waiting reasons that mean the revision will not come up without a change.
FAILING_WAIT_REASONS = phases.FAILING_WAIT_REASONS


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


@dataclass(frozen=True)
class RevisionView:
    """One revision's Deployment, reduced to what status needs."""

    name: str
    revision: str
    version: str | None
    replicas: int
    ready: int
    available: int
    up_to_date: bool

    @classmethod
    def from_deployment(cls, deployment: Mapping[str, Any]) -> RevisionView:
        meta, spec = deployment["metadata"], deployment.get("spec", {})
        status = deployment.get("status", {})
        labels = meta.get("labels", {})
        return cls(
            name=meta["name"],
            revision=labels.get(render.LABEL_REVISION, ""),
            version=labels.get("app.kubernetes.io/version"),
            replicas=spec.get("replicas", 0),
            ready=status.get("readyReplicas", 0),
            available=status.get("availableReplicas", 0),
            up_to_date=status.get("observedGeneration", 0) >= meta.get("generation", 0),
        )


def deployment_failure(deployment: Mapping[str, Any]) -> Failure | None:
    for cond in deployment.get("status", {}).get("conditions", []):
        if cond["type"] == "ReplicaFailure" and cond["status"] == "True":
            return Failure(cond.get("reason", "ReplicaFailure"), cond.get("message", ""))
        if cond["type"] == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Failure("ProgressDeadlineExceeded", cond.get("message", ""))
    return None


def start_failure(start: Mapping[str, Any], offer: str | None) -> Failure | None:
    """A pod's start that will not finish without a change (see phases), as a Failure; a GPU
    pod the scheduler cannot place is WaitingForGPU, with what the nodes offer."""
    scheduled = start.get("scheduled") or {}
    if not start.get("node") and scheduled.get("reason") == "Unschedulable":
        if start.get("gpu"):
            said = offer or offers.head(start["gpu"])
            return Failure("WaitingForGPU", f"{said}; scheduler: {scheduled.get('message', '')}")
        return Failure("Unschedulable", scheduled.get("message", ""))
    found = phases.failure(start)
    return Failure(found.reason, found.message) if found else None


def pod_failure(pods: Iterable[Mapping[str, Any]], offer: str | None = None) -> Failure | None:
    """The first reason a pod of the revision is not coming up, in a stable order."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if (start := pod.get("start")) is not None:
            if found := start_failure(start, offer):
                return found
            continue
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
    offer: str | None = None,
) -> dict[str, Any]:
    """The whole status subresource. `failure` is a known cause (invalid spec, aborted rollout);
    `step` what an unfinished rollout waits for (a canary pause, a promotion), when it says;
    `offer` what the nodes offer a pod waiting for a GPU (offers.describe)."""
    views = sorted((RevisionView.from_deployment(d) for d in deployments), key=lambda v: v.name)
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
    starting = None  # the start phase of the desired revision's pods, while they come up
    if failure is None and current is not None and not done:
        revision_pods = [
            p
            for p in pods
            if p["metadata"].get("labels", {}).get(render.LABEL_REVISION) == desired_revision
        ]
        deployment = next(d for d in deployments if d["metadata"]["name"] == current.name)
        failure = pod_failure(revision_pods, offer) or deployment_failure(deployment)
        starting = phases.revision_start(p["start"] for p in revision_pods if "start" in p)

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
    elif starting is not None:
        ready = (False, starting.phase, f"{counts}; {phases.message(starting)}")
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
    elif starting is not None:
        progressing = (True, starting.phase, f"{counts}; {phases.message(starting)}")
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


def phase(view: RevisionView, desired: str, done: bool) -> str:
    if view.revision == desired:
        return "Serving" if done else "Progressing"
    return "Serving" if view.replicas > 0 else "Retired"


def short(text: str, limit: int = 300) -> str:
    """One line, bounded: for condition messages and events."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
