"""Where a pod is in its start, derived from Kubernetes' own signals only (pure).

A model server's pod starts in phases, each told by a signal the kubelet or the scheduler
already writes:

- WaitingForGPU: not scheduled, the scheduler said Unschedulable, and the pod asks for a GPU.
- PullingImage: scheduled, no container started yet (the image pull, volumes, the sandbox).
- Downloading: the `fetch` init container runs (`torchship-runtime fetch`).
- Loading: the runtime container runs and its startup probe has not passed: the startup
  probe (`/v2/health/started`) passes once the model is loaded.
- WarmingUp: started, not ready yet: the warm-up batches (and the compile, when asked).
- Ready: the pod's Ready condition.

`facts()` keeps, from a pod, only what the derivation reads (the pod watch cache holds that);
everything else here works on those facts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .vocabulary import one_line

FETCH_CONTAINER = "fetch"
RUNTIME_CONTAINER = "runtime"

# The reasons a revision's start reports while its pods come up, in the order they pass.
START_REASONS = ("WaitingForGPU", "PullingImage", "Downloading", "Loading", "WarmingUp")
ORDER = {reason: i for i, reason in enumerate(("Scheduling", *START_REASONS, "Ready"))}

# Waiting reasons that mean the container will not start without a change.
FAILING_WAIT_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
IMAGE_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})


@dataclass(frozen=True)
class Start:
    """One pod's phase: its reason, since when (an RFC 3339 time, when Kubernetes says),
    and what it is doing in words."""

    phase: str
    since: str | None
    detail: str


@dataclass(frozen=True)
class StartFailure:
    reason: str
    message: str


# -- facts: the part of a pod the derivation reads -------------------------------------------


def _container(status: Mapping[str, Any], init: bool) -> dict[str, Any]:
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated")
    out: dict[str, Any] = {
        "name": status.get("name"),
        "init": init,
        "started": bool(status.get("started")),
        "ready": bool(status.get("ready")),
        "restarts": status.get("restartCount", 0),
    }
    if waiting := state.get("waiting"):
        out["waiting"] = {k: waiting.get(k, "") for k in ("reason", "message")}
    if running := state.get("running"):
        out["running"] = running.get("startedAt")
    for key, terminated in (("terminated", state.get("terminated")), ("last", last)):
        if terminated:
            out[key] = {
                "reason": terminated.get("reason", ""),
                "exitCode": terminated.get("exitCode", 0),
                "startedAt": terminated.get("startedAt"),
                "finishedAt": terminated.get("finishedAt"),
                "message": one_line(terminated.get("message") or ""),
            }
    return out


def gpu_need(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The GPU resource the pod's containers ask for, with the node labels it requires."""
    for container in spec.get("containers", []):
        limits = (container.get("resources") or {}).get("limits") or {}
        for resource, value in limits.items():
            if "gpu" in resource or resource.startswith("nvidia.com/"):
                return {
                    "resource": resource,
                    "count": int(value),
                    "selector": dict(spec.get("nodeSelector") or {}),
                }
    return None


def facts(spec: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """What a pod's start phase is derived from, and nothing more."""
    conditions = {c.get("type"): c for c in status.get("conditions", [])}
    scheduled = conditions.get("PodScheduled") or {}
    ready = conditions.get("Ready") or {}
    memory = None
    for container in spec.get("containers", []):
        if container.get("name") == RUNTIME_CONTAINER:
            memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return {
        "node": spec.get("nodeName"),
        "scheduled": {
            "status": scheduled.get("status", "Unknown"),
            "reason": scheduled.get("reason", ""),
            "message": scheduled.get("message", ""),
            "at": scheduled.get("lastTransitionTime"),
        },
        "ready": ready.get("status") == "True",
        "readyAt": ready.get("lastTransitionTime") if ready.get("status") == "True" else None,
        "gpu": gpu_need(spec),
        "memoryLimit": memory,
        "containers": [_container(c, True) for c in status.get("initContainerStatuses", [])]
        + [_container(c, False) for c in status.get("containerStatuses", [])],
    }


# -- derivation ------------------------------------------------------------------------------


def _named(start: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((c for c in start.get("containers", []) if c["name"] == name), None)


def failure(start: Mapping[str, Any]) -> StartFailure | None:
    """Why this pod will not come up without a change, when its start says so."""
    if start.get("ready"):
        return None
    for c in start.get("containers", []):
        waiting = c.get("waiting") or {}
        reason = waiting.get("reason", "")
        terminated = c.get("terminated") or {}
        last = c.get("last") or {}
        if c["init"] and c["name"] == FETCH_CONTAINER:
            failed = terminated if terminated.get("exitCode") else last
            if reason in IMAGE_REASONS:
                return StartFailure(reason, waiting.get("message") or f"container {c['name']}")
            if (reason in FAILING_WAIT_REASONS or terminated.get("exitCode")) and failed:
                words = failed.get("message") or f"exit code {failed.get('exitCode')}"
                return StartFailure("FetchFailed", f"the model fetch failed: {words}")
            if reason in FAILING_WAIT_REASONS:
                return StartFailure(reason, waiting.get("message") or f"container {c['name']}")
            continue
        if c["name"] == RUNTIME_CONTAINER and not c["ready"] and last.get("reason") == "OOMKilled":
            limit = start.get("memoryLimit")
            return StartFailure(
                "OOMKilled",
                "the runtime was killed for memory while loading the model"
                + (f" (memory limit {limit})" if limit else "")
                + ": raise spec.runtime.resources.limits.memory",
            )
        if reason in FAILING_WAIT_REASONS:
            # A crashing container's own last words say why; the back-off text names the pod
            # and changes with every restart.
            return StartFailure(
                reason, last.get("message") or waiting.get("message") or f"container {c['name']}"
            )
    return None


def pod_start(start: Mapping[str, Any]) -> Start:
    """The phase of one pod's start."""
    if start.get("ready"):
        return Start("Ready", start.get("readyAt"), "ready")
    scheduled = start.get("scheduled") or {}
    if not start.get("node"):
        if scheduled.get("reason") == "Unschedulable" and start.get("gpu"):
            return Start("WaitingForGPU", scheduled.get("at"), scheduled.get("message", ""))
        return Start("Scheduling", None, "waiting for the scheduler")
    containers = start.get("containers", [])
    init_done = None  # when the last init container finished
    for c in containers:
        if not c["init"]:
            continue
        terminated = c.get("terminated") or {}
        if terminated and terminated.get("exitCode") == 0:
            init_done = terminated.get("finishedAt")
            continue
        if c.get("running"):
            return Start("Downloading", c["running"], "downloading the model")
        return Start("PullingImage", scheduled.get("at"), "pulling the runtime image")
    runtime = next((c for c in containers if not c["init"]), None)
    if runtime is None or not runtime.get("running"):
        if init_done is not None:  # the image is on the node already: the container starts
            return Start("Loading", init_done, "starting the runtime")
        return Start("PullingImage", scheduled.get("at"), "pulling the runtime image")
    if not runtime["started"]:
        return Start("Loading", runtime["running"], "loading the model")
    return Start("WarmingUp", None, "warming up")


def revision_start(starts: Iterable[Mapping[str, Any]]) -> Start | None:
    """The revision's phase: its least advanced pod's that is not ready (None when all are)."""
    phases = [pod_start(s) for s in starts]
    waiting = [p for p in phases if p.phase != "Ready"]
    if not waiting:
        return None
    first = min(waiting, key=lambda p: (ORDER.get(p.phase, 0), p.since or ""))
    return first if first.phase in START_REASONS else None


def message(start: Start) -> str:
    """For a condition message: stable facts only (a start time, never an elapsed time)."""
    since = f" since {start.since}" if start.since else ""
    return f"the least advanced pod is {start.detail}{since}"


# -- durations of finished phases, for Events ------------------------------------------------


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def fetch_report(start: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the fetch container reported in its termination message (JSON), if it finished."""
    fetch = _named(start, FETCH_CONTAINER)
    terminated = (fetch or {}).get("terminated") or {}
    if terminated.get("exitCode") != 0 or not terminated:
        return None
    try:
        report = json.loads(terminated.get("message") or "{}")
    except ValueError:
        report = {}
    if not isinstance(report, dict):
        report = {}
    if "seconds" not in report:
        measured = seconds_between(terminated.get("startedAt"), terminated.get("finishedAt"))
        report["seconds"] = measured or 0.0
    return report


def size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def first_start(start: Mapping[str, Any]) -> str | None:
    """When the pod's first container started."""
    for c in start.get("containers", []):
        when = c.get("running") or (c.get("terminated") or {}).get("startedAt")
        if when:
            return when
    return None
