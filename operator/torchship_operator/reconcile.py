"""One level-based reconcile of one ModelService: observe, decide, apply, report.

Called by the work queue with the latest state from the watch caches; idempotent, so it runs
the same on create, update, resume after a restart, and after any child's change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from . import (
    api,
    autoscaling,
    cache,
    offers,
    phases,
    render,
    rollout,
    room,
    routing,
    scrape,
    status,
)
from .kube import Applied, Kube, Refused
from .settings import Settings
from .vocabulary import Cause, Event, EventType, one_line, revision_of

log = logging.getLogger("torchship.reconcile")

# How often a model cache's fill Job is read while it runs.
CACHE_POLL_SECONDS = 5.0
# ... and after it failed, for a person deleting it to start a new one.
CACHE_FAILED_POLL_SECONDS = 30.0
# How often an HTTPRoute's status is read (it is not watched): until its Gateway accepts it,
# and after, to notice a Gateway that stops accepting it.
ROUTE_PENDING_POLL_SECONDS = 30.0
ROUTE_ACCEPTED_POLL_SECONDS = 300.0

# A new ModelService's first status is held this long after its creation while all it would
# say is "pods coming up": most first revisions are Ready by then, and one status write
# (Ready) replaces two (RolloutInProgress, then Ready). A failure is reported at once.
FIRST_STATUS_GRACE = 15.0
# Ready reasons of pods coming up as expected: routine, worth neither an Event nor a first
# status of its own (waiting for a GPU is not routine: it may never come).
COMING_UP = frozenset({"RolloutInProgress", *phases.START_REASONS} - {"WaitingForGPU"})


@dataclass
class Observed:
    """The world as the watch caches saw it for one ModelService."""

    body: Mapping[str, Any]
    deployments: Sequence[Mapping[str, Any]]
    services: Sequence[Mapping[str, Any]]
    hpas: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]


@dataclass
class Outcome:
    ready: bool
    requeue_after: float | None = None
    failed: bool = False  # a write was refused: back off before the next pass
    writes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def emit(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_of(body: Mapping[str, Any]) -> render.Owner:
    meta = body["metadata"]
    return render.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def invalid_spec_message(error: ValidationError) -> str:
    parts = [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:3]]
    return "; ".join(parts)


async def reconcile(
    observed: Observed,
    kube: Kube,
    settings: Settings,
    now: float,
    scraper: scrape.Scraper | None = None,
) -> Outcome:
    meta = observed.body["metadata"]
    # Our last status write, when the watch cache has not caught up with it yet.
    body = kube.latest((api.KIND, meta["namespace"], meta["name"]), observed.body) or observed.body
    owner = owner_of(body)
    previous = body.get("status") or {}
    outcome = Outcome(ready=False)

    try:
        spec = api.ModelServiceSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        # The CRD rejects most of this; what slips through waits for a spec change, no retry.
        invalid = Cause.failed("InvalidSpec", invalid_spec_message(error))
        new_status = report(observed, status.Wanted(revision="", total=0), invalid)
        await write_status(kube, owner, previous, new_status, outcome)
        return outcome

    image = spec.runtime.image or settings.runtime_image
    desired = render.revision_hash(spec, image)

    policy = rollout.RolloutPolicy.from_spec(spec.rollout)
    state = rollout.RolloutState.from_dict(previous.get("rollout"))
    key = (owner.namespace, owner.name)
    measurement = None
    if scraper is not None and analysed(policy, state, desired):
        measurement = await scraper.measure(
            key,
            observed.pods,
            canary=desired,
            stable=state.stable_revision,
            port=render.RUNTIME_PORT,
            tls=spec.tls is not None,
            since=state.paused_at or now,
            interval=policy.analysis.interval_seconds,
            now=now,
        )
    decision = rollout.plan(
        policy=policy,
        desired=desired,
        total=spec.total_replicas,
        state=state,
        revisions=observed_revisions(observed, desired),
        now=now,
        promoted_step=spec.rollout.promoted_step,
        measurement=measurement,
    )

    first_revision = not (previous.get("rollout") or {}).get("stableRevision")
    try:
        filling = await reconcile_cache(owner, spec, image, decision, observed, kube, outcome)
        await apply_children(owner, spec, image, desired, decision, observed, kube, outcome)
        routed = await reconcile_routing(owner, spec, decision, observed, kube, outcome)
    except Refused as refused:
        # The status says what the API server refused, in its words; the work queue backs
        # off (outcome.failed) rather than retrying at once.
        outcome.failed = True
        new_status = refused_status(spec, desired, observed, refused)
        await write_status(kube, owner, previous, new_status, outcome)
        return outcome

    offer = await gpu_offer(observed.pods, desired, kube, settings.clusterwide)
    cause = decision.cause
    if (cause is None or cause.kind != "failed") and isinstance(filling, Cause):
        cause = filling
    if (cause is None or cause.kind != "failed") and routed is not None and routed.refused:
        cause = Cause.failed(routed.reason, routed.message)
    given_up = cause is not None and cause.kind == "failed"
    # After an abort the status reports on the revision that serves again.
    reported = (decision.state.stable_revision or desired) if given_up else desired
    new_status = report(
        observed,
        wanted(owner, spec, reported),
        cause,
        decision.weights,
        decision.state.to_dict(),
        offer,
        routed,
    )
    outcome.requeue_after = decision.requeue_after
    if scraper is not None:
        if analysed(policy, decision.state, desired):
            # The next window; at once when the step was just reached (its first reading).
            poll = scraper.due(key, policy.analysis.interval_seconds, now) or 1.0
            outcome.requeue_after = min(outcome.requeue_after or poll, poll)
        else:
            scraper.forget(key)
    if routed is not None:
        poll = (
            ROUTE_ACCEPTED_POLL_SECONDS if routed.status == "True" else ROUTE_PENDING_POLL_SECONDS
        )
        outcome.requeue_after = min(outcome.requeue_after or poll, poll)
    if filling is not None:  # the fill Job is not watched: asked again while it runs or failed
        poll = CACHE_POLL_SECONDS if filling is True else CACHE_FAILED_POLL_SECONDS
        outcome.requeue_after = min(outcome.requeue_after or poll, poll)
    if first_revision:
        # Its RevisionCreated said it began and its Ready condition says it is done.
        outcome.events = [e for e in outcome.events if e.reason != "RolloutComplete"]
    hold = first_status_hold(body, previous, new_status, now)
    if hold is not None:
        outcome.requeue_after = min(hold, outcome.requeue_after or hold)
        return outcome
    await write_status(kube, owner, previous, new_status, outcome)
    return outcome


def analysed(
    policy: rollout.RolloutPolicy, state: rollout.RolloutState | None, desired: str
) -> bool:
    """A canary of `desired` paused at an analysed step: its windows are being measured."""
    return (
        policy.analysis is not None
        and state is not None
        and state.phase == "Paused"
        and state.target_revision == desired
        and state.stable_revision not in (None, desired)
    )


def observed_revisions(observed: Observed, desired: str) -> list[rollout.ObservedRevision]:
    """The revisions' Deployments, with what their pods say: why they fail, and the facts
    of making room (room.facts)."""
    return [
        replace(
            rollout.ObservedRevision.from_deployment(
                d,
                failure=pods_failure(observed.pods, revision_of(d)),
            ),
            **room.facts(observed.pods, revision_of(d), desired),
        )
        for d in observed.deployments
    ]


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


def refused_status(
    spec: api.ModelServiceSpec, desired: str, observed: Observed, refused: Refused
) -> dict[str, Any]:
    """The status after a refused write: Ready False and Degraded with the API server's message;
    the rollout state and the traffic split stay as last reported (nothing new was applied)."""
    previous = observed.body.get("status") or {}
    return report(
        observed,
        wanted(owner_of(observed.body), spec, desired),
        Cause.failed("ApplyRefused", one_line(str(refused))),
        {r["revision"]: r["weight"] for r in previous.get("revisions") or []},
        previous.get("rollout"),
    )


def report(
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
    live = {revision_of(d): d for d in observed.deployments}
    wanted = render.render(owner, spec, image, decision.replicas, decision.serving)
    current = live.get(desired)
    # The two are independent: applied at once, a pass costs one round trip, not two.
    service, applied = await both(
        kube.apply(wanted.service, named(observed.services, owner.name)),
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
            nodes = decision.give_up.get(revision, ())
            await give_up_pods(owner, revision, nodes, desired, observed, kube, outcome)
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


async def reconcile_routing(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    decision: rollout.Decision,
    observed: Observed,
    kube: Kube,
    outcome: Outcome,
) -> routing.RouteReport | None:
    """trafficRouting gateway-api: a Service per backend revision and the HTTPRoute over them,
    at the decision's weights; what the route's Gateway says of it. With `replicas` routing,
    none of them (a ModelService switched back removes what it had)."""
    backends = decision.backends if routing.enabled(spec) else ()
    stale = routing.stale_services(owner, observed.services, backends)
    report = None
    if routing.enabled(spec):
        for revision in backends:
            service = routing.revision_service(owner, spec, revision)
            name = service["metadata"]["name"]
            note_apply(
                outcome, "Service", name, await kube.apply(service, named(observed.services, name))
            )
        route = routing.http_route(owner, spec, backends, decision.weights)
        live = await kube.read(
            routing.ROUTE_API_VERSION, routing.ROUTE_KIND, owner.namespace, owner.name
        )
        try:
            note_apply(outcome, routing.ROUTE_KIND, owner.name, await kube.apply(route, live))
            report = routing.report(live, spec)
        except Refused as refused:
            if refused.code != 404:
                raise
            # No such resource: the Gateway API is not installed. Said in status, asked again
            # at the route's poll: installing the CRDs is enough.
            report = routing.missing_crds()
    elif stale:  # it was routed by an HTTPRoute: the route goes with its Services
        await kube.delete(
            routing.ROUTE_API_VERSION, routing.ROUTE_KIND, owner.namespace, owner.name
        )
        outcome.writes.append(f"delete/httproute/{owner.name}")
    # After the route stopped naming them.
    for name in stale:
        await kube.delete("v1", "Service", owner.namespace, name)
        outcome.writes.append(f"delete/service/{name}")
    return report


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


async def gpu_offer(
    pods: Sequence[Mapping[str, Any]], revision: str, kube: Kube, clusterwide: bool = True
) -> str | None:
    """What the nodes offer, read only while a pod of `revision` waits for a GPU."""
    for pod in pods:
        start = pod.get("start")
        if revision_of(pod) != revision or start is None:
            continue
        if phases.pod_start(start).phase == "WaitingForGPU":
            return await offers.describe(kube, start["gpu"], clusterwide)


async def both(first: Awaitable[Applied], second: Awaitable[Applied]) -> tuple[Applied, Applied]:
    """Await both; when either fails, raise the first one's error (in argument order)."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]

    return None


async def reconcile_cache(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    image: str,
    decision: rollout.Decision,
    observed: Observed,
    kube: Kube,
    outcome: Outcome,
) -> Cause | bool | None:
    """The model cache: its claim and fill Job when asked for, and the deletion of caches no
    revision mounts any more. Says True while the fill runs, the failed Cause when it failed, None
    otherwise. Read on demand (a GET or two), and only for ModelServices that have caches."""
    remaining = [d for d in observed.deployments if revision_of(d) not in decision.prune]
    wanted = cache.cache_name(owner.name, spec) if spec.model.cache else None
    if wanted is None and not cache.claims_in_use(observed.deployments):
        return None
    result: Cause | bool | None = None
    if wanted is not None:
        claim = cache.render_claim(owner, spec)
        live = await kube.read("v1", "PersistentVolumeClaim", owner.namespace, wanted)
        note_apply(outcome, "PersistentVolumeClaim", wanted, await kube.apply(claim, live))
        job = await kube.read("batch/v1", "Job", owner.namespace, wanted)
        if job is None:  # created once; a Job's template cannot change, nor needs to
            await kube.apply(cache.render_job(owner, spec, image), None)
            outcome.writes.append(f"job/{wanted}")
            outcome.emit(
                "Normal",
                "CacheFilling",
                f"filling model cache {wanted} ({spec.model.cache.size}) from {spec.model.uri}",
            )
        state = cache.job_state(job)
        if state == "Filling":
            result = True
        elif state == "Failed":
            pods = await kube.get(
                f"/api/v1/namespaces/{owner.namespace}/pods",
                labelSelector=f"{cache.LABEL_CACHE}={wanted}",
            )
            message = cache.job_failure(job, (pods or {}).get("items", []))
            result = Cause.failed("CacheFillFailed", one_line(message, 600))
    listed = await kube.get(
        f"/api/v1/namespaces/{owner.namespace}/persistentvolumeclaims",
        labelSelector=f"{render.LABEL_MS}={owner.name},{cache.LABEL_CACHE}",
    )
    names = [c["metadata"]["name"] for c in (listed or {}).get("items", [])]
    for name in cache.unused(names, remaining, wanted):
        await kube.delete("batch/v1", "Job", owner.namespace, name)
        await kube.delete("v1", "PersistentVolumeClaim", owner.namespace, name)
        outcome.writes.append(f"delete/cache/{name}")
        outcome.emit("Normal", "CacheDeleted", f"deleted model cache {name}: no revision uses it")
    return result


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


def pods_failure(pods: Sequence[Mapping[str, Any]], revision: str) -> str | None:
    mine = [p for p in pods if revision_of(p) == revision]
    failure = status.pod_failure(mine)
    return f"{failure.reason}: {failure.message}" if failure else None


def first(items: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return items[0] if items else None


def named(items: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((i for i in items if i["metadata"]["name"] == name), None)
