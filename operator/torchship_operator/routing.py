"""trafficRouting gateway-api, rendered and read back: pure, no client.

One Service per backend revision (its pods alone) and one HTTPRoute, named after the
ModelService, attached to `spec.rollout.gateway`, whose backendRefs carry the rollout's weights
exactly. The Gateway's controller reports on the route in `status.parents`; `report` reads that
back as the ModelService's `Routed` condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import api, render
from .vocabulary import LABEL_REVISION, one_line

GROUP = "gateway.networking.k8s.io"
ROUTE_API_VERSION = f"{GROUP}/v1"
ROUTE_KIND = "HTTPRoute"
# What a person runs when the cluster has no Gateway API (the standard channel is enough).
INSTALL_HINT = (
    "install the Gateway API CRDs (standard channel), e.g. kubectl apply --server-side -f "
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.4.1/standard-install.yaml"
)


def enabled(spec: api.ModelServiceSpec) -> bool:
    return spec.rollout.traffic_routing == "gateway-api"


def service_name(owner: render.Owner, revision: str) -> str:
    """A revision's own Service: the name of its Deployment (another kind, no clash)."""
    return render.deployment_name(owner.name, revision)


def revision_service(
    owner: render.Owner, spec: api.ModelServiceSpec, revision: str
) -> dict[str, Any]:
    """The Service in front of one revision's pods, a backend of the HTTPRoute."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(owner, revision),
            "namespace": owner.namespace,
            "labels": {**render.common_labels(owner.name, spec), LABEL_REVISION: revision},
            "ownerReferences": [owner.reference],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {render.LABEL_MS: owner.name, LABEL_REVISION: revision},
            "ports": render.service_ports(spec),
        },
    }


def parent_ref(gateway: api.GatewayRef) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": GROUP, "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        ref["namespace"] = gateway.namespace
    if gateway.section_name:
        ref["sectionName"] = gateway.section_name
    return ref


def http_route(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    backends: Sequence[str],
    weights: Mapping[str, int],
) -> dict[str, Any]:
    """The route: every backend revision's Service at its weight (0: running, not serving)."""
    assert spec.rollout.gateway is not None  # the CRD requires it with gateway-api
    return {
        "apiVersion": ROUTE_API_VERSION,
        "kind": ROUTE_KIND,
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": render.common_labels(owner.name, spec),
            "ownerReferences": [owner.reference],
        },
        "spec": {
            "parentRefs": [parent_ref(spec.rollout.gateway)],
            "rules": [
                {
                    "backendRefs": [
                        {
                            "group": "",
                            "kind": "Service",
                            "name": service_name(owner, revision),
                            "port": spec.service.port,
                            "weight": weights.get(revision, 0),
                        }
                        for revision in backends
                    ]
                }
            ],
        },
    }


def stale_services(
    owner: render.Owner, services: Sequence[Mapping[str, Any]], backends: Sequence[str]
) -> list[str]:
    """Names of revision Services that back nothing any more (or all of them, once routing
    is back to `replicas`: pass no backends)."""
    wanted = {service_name(owner, r) for r in backends}
    return sorted(
        s["metadata"]["name"]
        for s in services
        if (s["metadata"].get("labels") or {}).get(LABEL_REVISION)
        and s["metadata"]["name"] not in wanted
    )


# -- the route's status, as its Gateway's controller reports it --------------------------------

RouteStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class RouteReport:
    """The Routed condition: True when every parent accepted the route and resolved its
    backends; False with the controller's reason when one refused; Unknown until one reports."""

    status: RouteStatus
    reason: str
    message: str

    @property
    def refused(self) -> bool:
        return self.status == "False"

    @property
    def fields(self) -> tuple[str, str, str]:
        return self.status, self.reason, self.message


def missing_crds() -> RouteReport:
    return RouteReport(
        "False",
        "GatewayAPIMissing",
        f"rollout.trafficRouting gateway-api needs the {ROUTE_KIND} resource ({GROUP}), which "
        f"this cluster does not serve: {INSTALL_HINT}",
    )


def report(route: Mapping[str, Any] | None, spec: api.ModelServiceSpec) -> RouteReport:
    """Read what the route's parents say about it; only our Gateway's entries count."""
    gateway = spec.rollout.gateway
    assert gateway is not None
    name = f"HTTPRoute {((route or {}).get('metadata') or {}).get('name', '')}".strip()
    parents = [
        p
        for p in ((route or {}).get("status") or {}).get("parents") or []
        if (p.get("parentRef") or {}).get("name") == gateway.name
    ]
    for parent in parents:
        for cond in parent.get("conditions") or []:
            if cond.get("type") in ("Accepted", "ResolvedRefs") and cond.get("status") == "False":
                said = cond.get("message") or cond.get("reason") or ""
                return RouteReport(
                    "False",
                    cond.get("reason") or f"Not{cond['type']}",
                    one_line(
                        f"{name}: {cond['type']} False on Gateway {gateway.name} "
                        f"({parent.get('controllerName', 'its controller')}): {said}"
                    ),
                )
    accepted = [
        p
        for p in parents
        if {c.get("type") for c in p.get("conditions") or [] if c.get("status") == "True"}
        >= {"Accepted", "ResolvedRefs"}
    ]
    if accepted:
        controllers = ", ".join(sorted({p.get("controllerName", "?") for p in accepted}))
        return RouteReport(
            "True", "Accepted", f"{name} accepted by Gateway {gateway.name} ({controllers})"
        )
    return RouteReport(
        "Unknown",
        "AwaitingGateway",
        f"{name} attached to Gateway {gateway.name}: no controller has reported on it yet",
    )
