"""The status subresource's own reconcile: the status computed from the observed children and
the cause of anything not there yet, held a moment for a new ModelService, written only when
it differs, and one Event per change of cause."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .. import api, phases, render, routing, status
from ..kube import Kube, Refused
from ..vocabulary import Cause, one_line
from .common import Observed, Outcome, owner_of

log = logging.getLogger("torchship.reconcile")

# A new ModelService's first status is held this long after its creation while all it would
# say is "pods coming up": most first revisions are Ready by then, and one status write
# (Ready) replaces two (RolloutInProgress, then Ready). A failure is reported at once.
FIRST_STATUS_GRACE = 15.0
# Ready reasons of pods coming up as expected: routine, worth neither an Event nor a first
# status of its own (waiting for a GPU is not routine: it may never come).
COMING_UP = frozenset({"RolloutInProgress", *phases.START_REASONS} - {"WaitingForGPU"})


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compute(
    observed: Observed,
    wanted: status.Wanted,
    cause: Cause | None,
    weights: Mapping[str, int] | None = None,
    rollout_state: Mapping[str, Any] | None = None,
    offer: str | None = None,
    routed: routing.RouteReport | None = None,
) -> dict[str, Any]:
    """The status of the observed ModelService: what its spec wants, its children, and the
    cause (the rollout's, or a failure found before it) of anything not there yet."""
    body = observed.body
    return status.compute(
        owner=owner_of(body),
        wanted=wanted,
        children=status.Children(observed.deployments, observed.pods, offer),
        generation=body["metadata"].get("generation", 0),
        previous=body.get("status") or {},
        now=now_iso(),
        cause=cause,
        weights=weights,
        rollout=rollout_state,
        routed=routed,
    )


def wanted(owner: render.Owner, spec: api.ModelServiceSpec, revision: str) -> status.Wanted:
    return status.Wanted(
        revision=revision,
        total=spec.total_replicas,
        max_unavailable=spec.rollout.max_unavailable,
        make_room=spec.rollout.when_full == "MakeRoom",
        url=render.service_url(owner, spec),
        grpc_address=render.grpc_address(owner, spec),
    )


def refused_status(
    spec: api.ModelServiceSpec, desired: str, observed: Observed, refused: Refused
) -> dict[str, Any]:
    """The status after a refused write: Ready False and Degraded with the API server's message;
    the rollout state and the traffic split stay as last reported (nothing new was applied)."""
    previous = observed.body.get("status") or {}
    return compute(
        observed,
        wanted(owner_of(observed.body), spec, desired),
        Cause.failed("ApplyRefused", one_line(str(refused))),
        {r["revision"]: r["weight"] for r in previous.get("revisions") or []},
        previous.get("rollout"),
    )


def first_status_hold(
    body: Mapping[str, Any], previous: Mapping[str, Any], new: Mapping[str, Any], now: float
) -> float | None:
    """Seconds left to hold a new ModelService's first status, or None to write it now."""
    if previous.get("conditions"):
        return None
    if (body.get("spec") or {}).get("autoscaling"):
        return None  # its HPA reads the scale selector from status: at once
    ready = next(c for c in new["conditions"] if c["type"] == "Ready")
    if ready["reason"] not in COMING_UP:
        return None
    created = body["metadata"].get("creationTimestamp")
    if not created:
        return None
    age = now - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    left = FIRST_STATUS_GRACE - age
    return left if left > 0 else None


async def write_status(
    kube: Kube,
    owner: render.Owner,
    previous: Mapping[str, Any],
    new: dict[str, Any],
    outcome: Outcome,
) -> None:
    ready = next(c for c in new["conditions"] if c["type"] == "Ready")
    outcome.ready = ready["status"] == "True"
    if kube_equal(previous, new):
        return
    changed = sorted(k for k in set(previous) | set(new) if previous.get(k) != new.get(k))
    log.debug("status of %s/%s differs in %s", owner.namespace, owner.name, changed)
    await kube.patch_status(owner.namespace, owner.name, previous, new)
    outcome.writes.append("status")
    # One event per change of cause: Ready's, or Progressing's while a rollout moves under a
    # serving Ready (status.cause_told). Pods coming up, and a first Ready after them, are told
    # by RevisionCreated and the rollout's events already (a thousand new ModelServices would
    # otherwise cost a thousand more writes).
    cause, old = status.cause_told(new), status.cause_told(previous)
    changed = old is None or old["reason"] != cause["reason"]
    # Start phases are told by their own Events, with durations (starts.py).
    routine = cause["reason"] in COMING_UP or (
        cause["reason"] == "Ready" and (old is None or old["reason"] in COMING_UP)
    )
    # An Event of the same reason this pass already says it (AnalysisFailed, with figures).
    told = any(e.reason == cause["reason"] for e in outcome.events)
    if changed and not routine and not told:
        degraded = next(c for c in new["conditions"] if c["type"] == "Degraded")
        kind = "Warning" if degraded["status"] == "True" else "Normal"
        outcome.emit(kind, cause["reason"], cause["message"] or cause["reason"])
    log.info(
        "status of %s/%s updated: Ready=%s (%s)",
        owner.namespace,
        owner.name,
        ready["status"],
        ready["reason"],
    )


def kube_equal(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The status as stored equals the one computed (the server drops nothing we write)."""
    return all(previous.get(k) == v for k, v in new.items()) and set(previous) <= set(new)
