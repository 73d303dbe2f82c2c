"""trafficRouting gateway-api: the revision Services and the HTTPRoute rendered, and the route's
status read back as the Routed condition."""

from __future__ import annotations

from torchship_operator import api, render, routing

OWNER = render.Owner(name="resnet", namespace="ml", uid="u-1")


def spec(**gateway) -> api.ModelServiceSpec:
    return api.ModelServiceSpec.model_validate(
        {
            "model": {"uri": "https://models.example.com/m.pt", "format": "torchscript"},
            "rollout": {
                "strategy": "Canary",
                "steps": [{"weight": 10}],
                "trafficRouting": "gateway-api",
                "gateway": {"name": "web", **gateway},
            },
        }
    )


def test_the_route_attaches_to_the_gateway_and_weighs_every_backend():
    route = routing.http_route(
        OWNER, spec(namespace="infra", sectionName="https"), ("b", "a"), {"b": 10, "a": 90}
    )
    assert route["metadata"]["name"] == "resnet"
    assert route["metadata"]["ownerReferences"] == [OWNER.reference]
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "web",
            "namespace": "infra",
            "sectionName": "https",
        }
    ]
    (rule,) = route["spec"]["rules"]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("resnet-b", 8080, 10),
        ("resnet-a", 8080, 90),
    ]
    # A backend that runs without serving is named at weight 0 (it must still resolve).
    (rule,) = routing.http_route(OWNER, spec(), ("a", "b"), {"a": 100})["spec"]["rules"]
    assert [b["weight"] for b in rule["backendRefs"]] == [100, 0]
    assert (
        "namespace"
        not in routing.http_route(OWNER, spec(), ("a",), {"a": 100})["spec"]["parentRefs"][0]
    )


def test_a_revision_service_selects_that_revision_alone_on_the_same_ports():
    service = routing.revision_service(OWNER, spec(), "abc123")
    assert service["metadata"]["name"] == "resnet-abc123"
    assert service["spec"]["selector"] == {
        "torchship.dev/modelservice": "resnet",
        "torchship.dev/revision": "abc123",
    }
    assert service["spec"]["ports"] == render.service_ports(spec())
    assert service["metadata"]["labels"]["torchship.dev/revision"] == "abc123"


def test_stale_services_are_the_revision_services_no_backend_needs():
    services = [
        {"metadata": {"name": "resnet", "labels": {}}},  # the ModelService's own: never
        {"metadata": {"name": "resnet-a", "labels": {"torchship.dev/revision": "a"}}},
        {"metadata": {"name": "resnet-b", "labels": {"torchship.dev/revision": "b"}}},
    ]
    assert routing.stale_services(OWNER, services, ("b",)) == ["resnet-a"]
    assert routing.stale_services(OWNER, services, ()) == ["resnet-a", "resnet-b"]


def parent(name: str, **conditions: tuple[str, str]) -> dict:
    return {
        "parentRef": {"name": name},
        "controllerName": "example.com/gateway",
        "conditions": [
            {"type": kind, "status": status, "reason": reason, "message": f"{kind} {reason}"}
            for kind, (status, reason) in conditions.items()
        ],
    }


def route_with(*parents: dict) -> dict:
    return {"metadata": {"name": "resnet"}, "status": {"parents": list(parents)}}


def test_the_route_status_becomes_the_routed_condition():
    accepted = parent("web", Accepted=("True", "Accepted"), ResolvedRefs=("True", "ResolvedRefs"))
    report = routing.report(route_with(accepted), spec())
    assert report.fields[:2] == ("True", "Accepted") and not report.refused
    assert "example.com/gateway" in report.message

    refused = parent("web", Accepted=("False", "NotAllowedByListeners"))
    report = routing.report(route_with(refused), spec())
    assert report.refused and report.reason == "NotAllowedByListeners"
    assert "Accepted False on Gateway web" in report.message

    unresolved = parent(
        "web", Accepted=("True", "Accepted"), ResolvedRefs=("False", "BackendNotFound")
    )
    assert routing.report(route_with(unresolved), spec()).reason == "BackendNotFound"


def test_no_report_yet_is_unknown_and_other_gateways_do_not_count():
    assert routing.report(None, spec()).fields[:2] == ("Unknown", "AwaitingGateway")
    other = parent("elsewhere", Accepted=("False", "NotAllowedByListeners"))
    assert routing.report(route_with(other), spec()).status == "Unknown"


def test_a_cluster_without_the_gateway_api_is_told_what_to_install():
    report = routing.missing_crds()
    assert report.refused and report.reason == "GatewayAPIMissing"
    assert "standard-install.yaml" in report.message
