"""One level-based reconcile of one ModelService: observe, decide, apply, report.

Called by the work queue with the latest state from the watch caches; idempotent, so it runs
the same on create, update, resume after a restart, and after any child's change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from . import api, autoscaling, render, rollout, status
from .kube import Applied, Kube, Refused
from .settings import Settings

log = logging.getLogger("torchship.reconcile")

# Rollout phases that wait on time or on a person rather than on pods.
WAITING_REASONS = {"CanaryPaused", "AwaitingPromotion"}

# A new ModelService's first status is held this long after its creation while all it would
# say is "pods coming up": most first revisions are Ready by then, and one status write
# (Ready) replaces two (RolloutInProgress, then Ready). A failure is reported at once.
FIRST_STATUS_GRACE = 15.0


@dataclass
class Observed:
    """The world as the watch caches saw it for one ModelService."""

    body: Mapping[str, Any]
    deployments: Sequence[Mapping[str, Any]]
    services: Sequence[Mapping[str, Any]]
    hpas: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the ModelService, for `kubectl describe`."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    ready: bool
    requeue_after: float | None = None
    failed: bool = False  # a write was refused: back off before the next pass
    writes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def emit(self, kind: str, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_of(body: Mapping[str, Any]) -> render.Owner:
    meta = body["metadata"]
    return render.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def invalid_spec_message(error: ValidationError) -> str:
    parts = [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:3]]
    return "; ".join(parts)


async def reconcile(observed: Observed, kube: Kube, settings: Settings, now: float) -> Outcome:
    meta = observed.body["metadata"]
    # Our last status write, when the watch cache has not caught up with it yet.
    body = kube.latest((api.KIND, meta["namespace"], meta["name"]), observed.body) or observed.body
    owner = owner_of(body)
    generation = body["metadata"].get("generation", 0)
    previous = body.get("status") or {}
    outcome = Outcome(ready=False)

    try:
        spec = api.ModelServiceSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        # The CRD rejects most of this; what slips through waits for a spec change, no retry.
        failure = status.Failure("InvalidSpec", invalid_spec_message(error))
        new_status = status.compute(
            owner=owner,
            url="",
            generation=generation,
            desired_revision="",
            total=0,
            max_unavailable=0,
            weights={},
            deployments=observed.deployments,
            pods=[],
            previous=previous,
            now=now_iso(),
            failure=failure,
        )
        await write_status(kube, owner, previous, new_status, outcome)
        return outcome

    image = spec.runtime.image or settings.runtime_image
    desired = render.revision_hash(spec, image)

    decision = rollout.plan(
        policy=rollout.RolloutPolicy.from_spec(spec.rollout),
        desired=desired,
        total=spec.total_replicas,
        state=rollout.RolloutState.from_dict(previous.get("rollout")),
        revisions=[
            rollout.ObservedRevision.from_deployment(
                d,
                failure=pods_failure(observed.pods, d["metadata"]["labels"][render.LABEL_REVISION]),
            )
            for d in observed.deployments
        ],
        now=now,
        promoted_step=spec.rollout.promoted_step,
    )

    first_revision = not (previous.get("rollout") or {}).get("stableRevision")
    try:
        await apply_children(owner, spec, image, desired, decision, observed, kube, outcome)
    except Refused as refused:
        # The status says what the API server refused, in its words; the work queue backs
        # off (outcome.failed) rather than retrying at once.
        outcome.failed = True
        new_status = refused_status(owner, spec, generation, desired, observed, previous, refused)
        await write_status(kube, owner, previous, new_status, outcome)
        return outcome

    failure = None
    if decision.state.phase == "Aborted":
        failure = status.Failure(
            decision.state.reason or "RolloutAborted", decision.state.message or ""
        )
    new_status = status.compute(
        owner=owner,
        url=render.service_url(owner, spec),
        grpc_address=render.grpc_address(owner, spec),
        generation=generation,
        desired_revision=desired
        if failure is None
        else (decision.state.stable_revision or desired),
        total=spec.total_replicas,
        max_unavailable=spec.rollout.max_unavailable,
        weights=decision.weights,
        deployments=observed.deployments,
        pods=observed.pods,
        previous=previous,
        now=now_iso(),
        rollout=decision.state.to_dict(),
        failure=failure,
        step=rollout_step(decision),
    )
    outcome.requeue_after = decision.requeue_after
    if first_revision:
        # Its RevisionCreated said it began and its Ready condition says it is done.
        outcome.events = [e for e in outcome.events if e.reason != "RolloutComplete"]
    hold = first_status_hold(body, previous, new_status, now)
    if hold is not None:
        outcome.requeue_after = min(hold, outcome.requeue_after or hold)
        return outcome
    await write_status(kube, owner, previous, new_status, outcome)
    return outcome


def first_status_hold(
    body: Mapping[str, Any], previous: Mapping[str, Any], new: Mapping[str, Any], now: float
) -> float | None:
    """Seconds left to hold a new ModelService's first status, or None to write it now."""
    if previous.get("conditions"):
        return None
    if (body.get("spec") or {}).get("autoscaling"):
        return None  # its HPA reads the scale selector from status: at once
    ready = next(c for c in new["conditions"] if c["type"] == "Ready")
    if ready["reason"] != "RolloutInProgress":
        return None
    created = body["metadata"].get("creationTimestamp")
    if not created:
        return None
    age = now - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    left = FIRST_STATUS_GRACE - age
    return left if left > 0 else None


def refused_status(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    generation: int,
    desired: str,
    observed: Observed,
    previous: Mapping[str, Any],
    refused: Refused,
) -> dict[str, Any]:
    """The status after a refused write: Ready False and Degraded with the API server's message;
    the rollout state and the traffic split stay as last reported (nothing new was applied)."""
    return status.compute(
        owner=owner,
        url=render.service_url(owner, spec),
        grpc_address=render.grpc_address(owner, spec),
        generation=generation,
        desired_revision=desired,
        total=spec.total_replicas,
        max_unavailable=spec.rollout.max_unavailable,
        weights={r["revision"]: r["weight"] for r in previous.get("revisions") or []},
        deployments=observed.deployments,
        pods=observed.pods,
        previous=previous,
        now=now_iso(),
        rollout=previous.get("rollout"),
        failure=status.Failure("ApplyRefused", status.short(str(refused))),
    )


async def apply_children(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    image: str,
    desired: str,
    decision: rollout.Decision,
    observed: Observed,
    kube: Kube,
    outcome: Outcome,
) -> None:
    """Apply what the decision asks for: Service, the desired Deployment, older revisions'
    scales, prunes, the HPA. Raises `Refused` at the first write the API server refuses."""
    live = {d["metadata"]["labels"][render.LABEL_REVISION]: d for d in observed.deployments}
    wanted = render.render(owner, spec, image, decision.replicas, decision.serving)
    current = live.get(desired)
    # The two are independent: applied at once, a pass costs one round trip, not two.
    service, applied = await both(
        kube.apply(wanted.service, first(observed.services)),
        kube.apply(wanted.deployment, current),
    )
    note_apply(outcome, "Service", owner.name, service)
    note_apply(outcome, "Deployment", wanted.deployment["metadata"]["name"], applied)
    replicas = wanted.deployment["spec"]["replicas"]
    if applied is Applied.CREATED:
        version = f" (version {spec.model.version})" if spec.model.version else ""
        outcome.emit(
            "Normal",
            "RevisionCreated",
            f"created revision {desired}{version} with {replicas} replicas",
        )
    elif applied is Applied.SCALED:
        note_scale(outcome, desired, current["spec"].get("replicas"), replicas)
    for revision, count in wanted.scales.items():
        older = live.get(revision)
        if older is not None and older["spec"].get("replicas") != count:
            await kube.scale_deployment(owner.namespace, older["metadata"]["name"], count)
            outcome.writes.append(f"scale/{revision}")
            note_scale(outcome, revision, older["spec"].get("replicas"), count)
    for revision in decision.prune:
        if revision in live:
            await kube.delete(
                "apps/v1", "Deployment", owner.namespace, live[revision]["metadata"]["name"]
            )
            outcome.writes.append(f"delete/{revision}")
    for event in decision.events:
        outcome.emit(event.type, event.reason, event.message)

    await reconcile_hpa(owner, spec, observed, kube, outcome)


async def both(first: Awaitable[Applied], second: Awaitable[Applied]) -> tuple[Applied, Applied]:
    """Await both; when either fails, raise the first one's error (in argument order)."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]


def rollout_step(decision: rollout.Decision) -> status.Failure | None:
    """What a rollout waits for, when it is more than its pods coming up."""
    hint = decision.progressing
    if hint.status and hint.reason in WAITING_REASONS:
        return status.Failure(hint.reason, hint.message)
    return None


def note_apply(outcome: Outcome, kind: str, name: str, applied: Applied) -> None:
    if not applied:
        return
    outcome.writes.append(f"{kind.lower()}/{name}")
    if applied is Applied.CORRECTED:
        outcome.emit(
            "Warning",
            "DriftCorrected",
            f"{kind} {name} was changed outside torchship; its managed fields were restored",
        )


def note_scale(outcome: Outcome, revision: str, before: int | None, after: int) -> None:
    outcome.emit("Normal", "Scaled", f"scaled revision {revision} from {before} to {after}")


async def reconcile_hpa(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    observed: Observed,
    kube: Kube,
    outcome: Outcome,
) -> None:
    live = first(observed.hpas)
    if spec.autoscaling is None:
        if live is not None:
            await kube.delete(
                "autoscaling/v2", "HorizontalPodAutoscaler", owner.namespace, owner.name
            )
            outcome.writes.append("delete/hpa")
        return
    hpa = autoscaling.render_hpa(
        name=owner.name,
        namespace=owner.namespace,
        labels=render.common_labels(owner.name, spec),
        owner_reference=owner.reference,
        autoscaling=spec.autoscaling.model_dump(mode="json", by_alias=True, exclude_none=True),
    )
    note_apply(outcome, "HorizontalPodAutoscaler", owner.name, await kube.apply(hpa, live))


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
    old_ready = next((c for c in previous.get("conditions") or [] if c["type"] == "Ready"), None)
    # One event per change of cause. Pods coming up, and a first Ready after them, are told by
    # RevisionCreated and the rollout's events already (a thousand new ModelServices would
    # otherwise cost a thousand more writes).
    changed = old_ready is None or old_ready["reason"] != ready["reason"]
    routine = ready["reason"] == "RolloutInProgress" or (
        ready["reason"] == "Ready"
        and (old_ready is None or old_ready["reason"] == "RolloutInProgress")
    )
    if changed and not routine:
        degraded = next(c for c in new["conditions"] if c["type"] == "Degraded")
        kind = "Warning" if degraded["status"] == "True" else "Normal"
        outcome.emit(kind, ready["reason"], ready["message"] or ready["reason"])
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


def pods_failure(pods: Sequence[Mapping[str, Any]], revision: str) -> str | None:
    mine = [p for p in pods if p["metadata"]["labels"].get(render.LABEL_REVISION) == revision]
    failure = status.pod_failure(mine)
    return f"{failure.reason}: {failure.message}" if failure else None


def first(items: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return items[0] if items else None
