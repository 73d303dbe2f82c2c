"""One level-based reconcile of one ModelService: observe, decide, apply, report.

Called by the work queue with the latest state from the watch caches; idempotent, so it runs
the same on create, update, resume after a restart, and after any child's change. This module
is the table of contents; each child kind's own reconcile lives in reconcilers/:

    observe  the ModelService (or our last status write of it) and its children, from the
             watch caches; a spec that does not validate is reported and waits for a new one
    decide   a canary step's measurement when one is due (scrape.py), then rollout.plan (pure)
    apply    model_cache, deployments (make_room first), hpa, httproute; a write the API server
             refuses is reported (ApplyRefused) and the work queue backs off
    report   the status from the decision's cause and what the children said (gpu_offer among
             them), and when to come back for what no watch tells (report)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from . import api, render, rollout, room, routing, scrape, status
from .kube import Kube, Refused
from .reconcilers import deployments, hpa, httproute, model_cache, report
from .reconcilers.common import Observed, Outcome, owner_of
from .reconcilers.gpu_offer import gpu_offer
from .settings import Settings
from .vocabulary import Cause, revision_of

__all__ = ["Observed", "Outcome", "reconcile"]


@dataclass
class ChildReports:
    """What the children's own reconciles said, for the status and for when to come back."""

    filling: Cause | bool | None = None  # the model cache: filling (True), or why it failed
    routed: routing.RouteReport | None = None  # the HTTPRoute, as its Gateway sees it
    offer: str | None = None  # what the nodes offer a pod waiting for its GPU


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
        new_status = report.compute(observed, status.Wanted(revision="", total=0), invalid)
        await report.write_status(kube, owner, previous, new_status, outcome)
        return outcome

    image = spec.runtime.image or settings.runtime_image
    desired = render.revision_hash(spec, image)
    policy = rollout.RolloutPolicy.from_spec(spec.rollout)
    key = (owner.namespace, owner.name)
    state = rollout.RolloutState.from_dict(previous.get("rollout"))
    decision = await decide(observed, spec, policy, desired, state, now, scraper, key)

    said = ChildReports()
    try:  # each child kind's own reconcile, in order
        said.filling = await model_cache.reconcile(
            owner, spec, image, decision, observed, kube, outcome
        )
        await deployments.reconcile(owner, spec, image, desired, decision, observed, kube, outcome)
        await hpa.reconcile(owner, spec, observed, kube, outcome)
        said.routed = await httproute.reconcile(owner, spec, decision, observed, kube, outcome)
    except Refused as refused:
        # The status says what the API server refused, in its words; the work queue backs
        # off (outcome.failed) rather than retrying at once.
        outcome.failed = True
        new_status = report.refused_status(spec, desired, observed, refused)
        await report.write_status(kube, owner, previous, new_status, outcome)
        return outcome

    said.offer = await gpu_offer(observed.pods, desired, kube, settings.clusterwide)
    new_status = reported(observed, owner, spec, desired, decision, said)
    outcome.requeue_after = decision.requeue_after
    come_back(outcome, policy, decision, desired, said, scraper, key, now)
    if state is None or not state.stable_revision:
        # Its RevisionCreated said it began and its Ready condition says it is done.
        outcome.events = [e for e in outcome.events if e.reason != "RolloutComplete"]
    hold = report.first_status_hold(body, previous, new_status, now)
    if hold is not None:
        outcome.poll(hold)
        return outcome
    await report.write_status(kube, owner, previous, new_status, outcome)
    return outcome


def invalid_spec_message(error: ValidationError) -> str:
    parts = [f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:3]]
    return "; ".join(parts)


# -- decide ------------------------------------------------------------------------------------


async def decide(
    observed: Observed,
    spec: api.ModelServiceSpec,
    policy: rollout.RolloutPolicy,
    desired: str,
    state: rollout.RolloutState | None,
    now: float,
    scraper: scrape.Scraper | None,
    key: tuple[str, str],
) -> rollout.Decision:
    """A canary step's measurement, when one is being taken, then the rollout's decision."""
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
    return rollout.plan(
        policy=policy,
        desired=desired,
        total=spec.total_replicas,
        state=state,
        revisions=observed_revisions(observed, desired),
        now=now,
        promoted_step=spec.rollout.promoted_step,
        measurement=measurement,
    )


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


def pods_failure(pods: Sequence[Mapping[str, Any]], revision: str) -> str | None:
    mine = [p for p in pods if revision_of(p) == revision]
    failure = status.pod_failure(mine)
    return f"{failure.reason}: {failure.message}" if failure else None


# -- report ------------------------------------------------------------------------------------


def reported(
    observed: Observed,
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    desired: str,
    decision: rollout.Decision,
    said: ChildReports,
) -> dict[str, Any]:
    """The status after this pass: the rollout's cause, unless a child failed first."""
    cause = decision.cause
    if (cause is None or cause.kind != "failed") and isinstance(said.filling, Cause):
        cause = said.filling
    routed = said.routed
    if (cause is None or cause.kind != "failed") and routed is not None and routed.refused:
        cause = Cause.failed(routed.reason, routed.message)
    given_up = cause is not None and cause.kind == "failed"
    # After an abort the status reports on the revision that serves again.
    revision = (decision.state.stable_revision or desired) if given_up else desired
    return report.compute(
        observed,
        report.wanted(owner, spec, revision),
        cause,
        decision.weights,
        decision.state.to_dict(),
        said.offer,
        routed,
    )


def come_back(
    outcome: Outcome,
    policy: rollout.RolloutPolicy,
    decision: rollout.Decision,
    desired: str,
    said: ChildReports,
    scraper: scrape.Scraper | None,
    key: tuple[str, str],
    now: float,
) -> None:
    """When to come back for what no watch tells: a canary's next measurement window, the
    HTTPRoute's status, the fill Job."""
    if scraper is not None:
        if analysed(policy, decision.state, desired):
            # The next window; at once when the step was just reached (its first reading).
            outcome.poll(scraper.due(key, policy.analysis.interval_seconds, now) or 1.0)
        else:
            scraper.forget(key)
    for seconds in (httproute.poll_seconds(said.routed), model_cache.poll_seconds(said.filling)):
        if seconds is not None:
            outcome.poll(seconds)
