"""trafficRouting gateway-api on the real control plane, with the Gateway API's own CRDs
(standard channel, from the sigs.k8s.io/gateway-api module): the HTTPRoute's weights at each
step of each strategy, validated by the API server; its Gateway's report as the Routed
condition; and a cluster without the CRDs told so."""

from __future__ import annotations

import json
import time

import pytest
import testenv
import yaml
from helpers import condition, get_json, wait_for
from operatorprocess import paused, start_operator, stop_operator
from test_modelservice import msvc, utc_now

from torchship_operator import rbac

GATEWAY_CRDS = ("httproutes", "gateways", "gatewayclasses", "grpcroutes", "referencegrants")


def install_gateway_api(control_plane) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(testenv.gateway_api_crds()))
    control_plane.wait_established(
        *(f"{plural}.gateway.networking.k8s.io" for plural in GATEWAY_CRDS)
    )


@pytest.fixture
def gateway_api(control_plane) -> None:
    install_gateway_api(control_plane)


@pytest.fixture
def gateway(control_plane, gateway_api, namespace) -> str:
    """A Gateway for the routes to attach to (no controller runs here: the test speaks for it)."""
    objects = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "torchship-test"},
            "spec": {"controllerName": "example.com/gateway-controller"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "gatewayClassName": "torchship-test",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
    ]
    for obj in objects:
        control_plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj))
    return "web"


def model(version: str) -> dict:
    return {"uri": "https://models.example.com/m.pt", "format": "torchscript", "version": version}


def routed(strategy: str, **rollout) -> dict:
    return {
        "strategy": strategy,
        "trafficRouting": "gateway-api",
        "gateway": {"name": "web", "sectionName": "http"},
        **rollout,
    }


def apply(control_plane, namespace: str, name: str, **spec) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc(name, **spec))


def route(control_plane, namespace: str, name: str) -> dict | None:
    out = control_plane.kubectl(
        "get", "httproute", name, "-n", namespace, "-o", "json", check=False
    )
    return json.loads(out.stdout) if out.returncode == 0 else None


def weights(control_plane, namespace: str, name: str) -> dict[str, int] | None:
    """The route's backends as {model version: weight}."""
    found = route(control_plane, namespace, name)
    if found is None:
        return None
    versions = {
        d["metadata"]["name"]: d["metadata"]["labels"].get("app.kubernetes.io/version", "?")
        for d in get_json(control_plane, "deployments", "-n", namespace)["items"]
    }
    (rule,) = found["spec"]["rules"]
    return {versions.get(b["name"], b["name"]): b["weight"] for b in rule["backendRefs"]}


def wait_condition(
    control_plane, namespace: str, name: str, kind: str, timeout: float = 60, **want
):
    """The ModelService once its `kind` condition has the fields in `want`."""

    def check() -> dict | None:
        obj = get_json(control_plane, "msvc", name, "-n", namespace)
        found = condition(obj, kind)
        return obj if all(found.get(k) == v for k, v in want.items()) else None

    return wait_for(check, timeout)


def ready(obj: dict) -> bool:
    return condition(obj, "Ready").get("status") == "True"


def watch_weights(control_plane, namespace: str, name: str, until, timeout: float = 120):
    """Every distinct route split seen, in order, until `until(modelservice, split)` holds."""
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = get_json(control_plane, "msvc", name, "-n", namespace)
        now = weights(control_plane, namespace, name)
        if now is not None and (not seen or seen[-1] != now):
            seen.append(now)
        if until(obj, now):
            return seen
        time.sleep(0.3)
    raise AssertionError(f"not done within {timeout}s; route splits seen: {seen}")


def settled_on(version: str):
    """Ready, and the route down to that version alone (the old backend dropped)."""
    return lambda obj, split: ready(obj) and split == {version: 100}


def test_canary_weights_on_the_route_are_the_steps_exactly_then_rollback(
    control_plane, operator, namespace, gateway
):
    steps = [{"weight": 10, "pauseSeconds": 3}, {"weight": 50, "pauseSeconds": 3}]
    rollout = routed("Canary", steps=steps)
    apply(control_plane, namespace, "ranker", model=model("v1"), replicas=4, rollout=rollout)
    wait_for(lambda: ready(get_json(control_plane, "msvc", "ranker", "-n", namespace)), 60)
    assert wait_for(lambda: weights(control_plane, namespace, "ranker") == {"v1": 100})

    apply(control_plane, namespace, "ranker", model=model("v2"), replicas=4, rollout=rollout)
    seen = watch_weights(control_plane, namespace, "ranker", settled_on("v2"))
    # 10% of 4 replicas is one pod of four, yet exactly 10% of the traffic.
    expected = [{"v2": 10, "v1": 90}, {"v2": 50, "v1": 50}]
    assert [s for s in seen if s in expected] == expected, seen
    shares = [s.get("v2", 0) for s in seen]
    assert shares == sorted(shares), seen  # the canary's share only grows
    assert seen[-1] == {"v2": 100}  # and the old backend is dropped (once its pods are gone)
    got = route(control_plane, namespace, "ranker")
    assert got["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "web",
            "sectionName": "http",
        }
    ]
    services = {
        s["metadata"]["name"] for s in get_json(control_plane, "svc", "-n", namespace)["items"]
    }
    (v2,) = [b["name"] for b in got["spec"]["rules"][0]["backendRefs"]]
    assert services == {"ranker", v2}  # the ModelService's own and the serving revision's
    status = get_json(control_plane, "msvc", "ranker", "-n", namespace)["status"]
    weighted = {r.get("version"): r["weight"] for r in status["revisions"]}
    assert weighted == {"v1": 0, "v2": 100}

    # Rollback: the kept v1 revision comes back through the same steps, on the same route.
    uid = got["metadata"]["uid"]
    apply(control_plane, namespace, "ranker", model=model("v1"), replicas=4, rollout=rollout)
    seen = watch_weights(control_plane, namespace, "ranker", settled_on("v1"))
    assert {"v1": 10, "v2": 90} in seen and {"v1": 50, "v2": 50} in seen, seen
    assert route(control_plane, namespace, "ranker")["metadata"]["uid"] == uid
    assert len(get_json(control_plane, "deployments", "-n", namespace)["items"]) == 2


def test_blue_green_switches_the_route_at_once(control_plane, operator, namespace, gateway):
    rollout = routed("BlueGreen")
    apply(control_plane, namespace, "bg", model=model("v1"), replicas=2, rollout=rollout)
    wait_for(lambda: weights(control_plane, namespace, "bg") == {"v1": 100}, 60)
    apply(control_plane, namespace, "bg", model=model("v2"), replicas=2, rollout=rollout)
    seen = watch_weights(control_plane, namespace, "bg", settled_on("v2"))
    # All or nothing (the pods here come up and go between two looks: the 0 weights may pass
    # unseen; the state machine's tests show them).
    assert all(set(s.values()) <= {0, 100} for s in seen), seen
    assert seen[-1] == {"v2": 100}, seen


def test_an_aborted_canary_sends_the_route_back_to_the_stable_revision(
    control_plane, operator, namespace, gateway
):
    rollout = routed(
        "Canary", steps=[{"weight": 50, "pauseSeconds": 5}], progressDeadlineSeconds=10
    )
    apply(control_plane, namespace, "nope", model=model("v1"), replicas=2, rollout=rollout)
    wait_for(lambda: weights(control_plane, namespace, "nope") == {"v1": 100}, 60)
    nowhere = {"count": 1, "product": "NVIDIA-B200"}  # no node has one: never ready
    apply(
        control_plane,
        namespace,
        "nope",
        model=model("v2"),
        replicas=2,
        rollout=rollout,
        gpu=nowhere,
    )
    assert wait_for(lambda: weights(control_plane, namespace, "nope") == {"v1": 100, "v2": 0})

    def aborted(obj: dict, split: dict[str, int] | None) -> bool:
        return obj["status"].get("rollout", {}).get("phase") == "Aborted"

    seen = watch_weights(control_plane, namespace, "nope", aborted, timeout=60)
    assert all(s.get("v2", 0) == 0 for s in seen), seen  # never a request to a canary not ready
    wait_for(lambda: weights(control_plane, namespace, "nope") == {"v1": 100}, 30)


def set_route_status(control_plane, namespace: str, name: str, **conditions: str) -> None:
    """What a Gateway controller writes on a route it has looked at."""
    found = route(control_plane, namespace, name)
    parent = {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"},
        "controllerName": "example.com/gateway-controller",
        "conditions": [
            {
                "type": kind,
                "status": "True" if reason == kind else "False",
                "reason": reason,
                "message": f"{kind}: {reason}",
                "observedGeneration": found["metadata"]["generation"],
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
            for kind, reason in conditions.items()
        ],
    }
    patch = json.dumps({"status": {"parents": [parent]}})
    control_plane.kubectl(
        "patch",
        "httproute",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )
    # The route is read on each pass, not watched: a change of the ModelService makes one now
    # rather than at the next poll.
    control_plane.kubectl(
        "annotate", "msvc", name, "-n", namespace, f"poke={time.time()}", "--overwrite"
    )


def test_the_gateway_report_on_the_route_is_the_routed_condition(
    control_plane, operator, namespace, gateway
):
    apply(control_plane, namespace, "seen", model=model("v1"), rollout=routed("RollingUpdate"))
    obj = wait_for(
        lambda: (o := get_json(control_plane, "msvc", "seen", "-n", namespace)) and ready(o) and o,
        60,
    )
    # No controller has looked at it yet: Unknown, and no reason to hold Ready back.
    assert condition(obj, "Routed")["status"] == "Unknown"
    assert condition(obj, "Routed")["reason"] == "AwaitingGateway"

    set_route_status(
        control_plane, namespace, "seen", Accepted="Accepted", ResolvedRefs="ResolvedRefs"
    )
    wait_condition(control_plane, namespace, "seen", "Routed", status="True")
    set_route_status(
        control_plane,
        namespace,
        "seen",
        Accepted="NotAllowedByListeners",
        ResolvedRefs="ResolvedRefs",
    )
    obj = wait_condition(control_plane, namespace, "seen", "Routed", status="False")
    assert condition(obj, "Routed")["reason"] == "NotAllowedByListeners"
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["reason"] == "NotAllowedByListeners"
    assert condition(obj, "Degraded")["status"] == "True"
    assert "Accepted False on Gateway web" in condition(obj, "Ready")["message"]


def test_without_the_gateway_api_the_status_says_what_to_install(
    control_plane, operator, namespace
):
    """Runs on a cluster whose Gateway API CRDs it removes, then installs them again."""
    control_plane.kubectl(
        "delete", "crd", "httproutes.gateway.networking.k8s.io", "--ignore-not-found", "--wait=true"
    )
    try:
        apply(control_plane, namespace, "bare", model=model("v1"), rollout=routed("RollingUpdate"))
        obj = wait_condition(control_plane, namespace, "bare", "Routed", reason="GatewayAPIMissing")
        assert condition(obj, "Ready")["reason"] == "GatewayAPIMissing"
        assert "standard-install.yaml" in condition(obj, "Routed")["message"]
        # Not a hot loop: asked again at the route's poll, not at once.
        time.sleep(3)  # the pods' own changes settle
        since = utc_now()
        time.sleep(10)
        writes = operator.writes(control_plane, namespace, since)
        assert len(writes) <= 1, [(w["verb"], w["objectRef"]["resource"]) for w in writes]
    finally:
        install_gateway_api(control_plane)
    # Installing the CRDs is enough: the route follows at the next poll.
    obj = wait_condition(
        control_plane, namespace, "bare", "Routed", timeout=60, reason="AwaitingGateway"
    )
    assert ready(obj)
    assert weights(control_plane, namespace, "bare") == {"v1": 100}


def test_a_route_the_operator_may_not_read_is_told_in_status(
    control_plane, operator, namespace, gateway_api, tmp_path
):
    """trafficRouting gateway-api with an operator whose rules leave the HTTPRoutes out (the
    chart's gatewayAPI.enabled off): the first read of the route is forbidden, and the status
    says so in the API server's words (ApplyRefused), as for a refused write; no
    ReconcileError."""
    user = "torchship-no-gateway"
    role = rbac.cluster_role(user, gateway_api=False)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    with paused(operator):
        limited = start_operator(control_plane, tmp_path / "no-gateway.log", user=user, groups=())
        try:
            rollout = routed("RollingUpdate")
            apply(control_plane, namespace, "unrouted", model=model("v1"), rollout=rollout)
            obj = wait_condition(control_plane, namespace, "unrouted", "Degraded", status="True")
            ready_now = condition(obj, "Ready")
            assert (ready_now["status"], ready_now["reason"]) == ("False", "ApplyRefused")
            message = condition(obj, "Degraded")["message"]
            assert message.startswith("HTTPRoute unrouted: "), message
            assert "forbidden" in message and "httproutes" in message, message
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
            events = get_json(control_plane, "events", "-n", namespace)["items"]
            reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "unrouted"}
            assert "ApplyRefused" in reasons and "ReconcileError" not in reasons, reasons
        finally:
            stop_operator(limited)
            control_plane.kubectl("delete", "msvc/unrouted", "-n", namespace, "--wait=false")
