"""The workloads' own reconcile: the Service, the desired revision's Deployment, the older
revisions' scales (MakeRoom's pods marked first) and the prunes the decision asks for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from .. import api, render, rollout
from ..kube import Applied, Kube
from ..vocabulary import revision_of
from . import make_room
from .common import Observed, Outcome, named, note_apply, note_scale


async def reconcile(
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
    scales, prunes. Raises `Refused` at the first write the API server refuses."""
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
            await make_room.give_up_pods(owner, revision, nodes, desired, observed, kube, outcome)
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


async def both(first: Awaitable[Applied], second: Awaitable[Applied]) -> tuple[Applied, Applied]:
    """Await both; when either fails, raise the first one's error (in argument order)."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]
