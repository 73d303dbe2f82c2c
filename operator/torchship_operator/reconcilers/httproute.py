"""The HTTPRoute's own reconcile (trafficRouting gateway-api): the route, the Services it
points at, and how often its status is read."""

from __future__ import annotations

from .. import api, render, rollout, routing
from ..kube import Kube, Refused
from .common import Observed, Outcome, named, note_apply

# How often an HTTPRoute's status is read (it is not watched): until its Gateway accepts it,
# and after, to notice a Gateway that stops accepting it.
ROUTE_PENDING_POLL_SECONDS = 30.0
ROUTE_ACCEPTED_POLL_SECONDS = 300.0


async def reconcile(
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


def poll_seconds(routed: routing.RouteReport | None) -> float | None:
    """The route's status is not watched: read again, sooner while its Gateway has not
    accepted it."""
    if routed is None:
        return None
    return ROUTE_ACCEPTED_POLL_SECONDS if routed.status == "True" else ROUTE_PENDING_POLL_SECONDS
