"""Every feature under exactly the chart's credentials: the operator as a real process with the
token of the chart's ServiceAccount (cluster-wide and namespaced installs, Gateway API routing
and leader election on), driven through the model cache (claims, Jobs), MakeRoom (a pod patched,
Deployments scaled), the GPU offer (nodes, and pods where the install may list them), an
HTTPRoute, a canary under analysis (its pods read) and the Lease. The audit log holds every
request of ServiceAccounts (testenv's policy): none may be denied, and each of those features'
requests must be there, so a rule the chart drops fails this test."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
import testenv
from helmchart import install_rbac, remove_rbac, service_account_kubeconfig
from helpers import condition, get_json, wait_for
from operatorprocess import install_crds

# A control plane of this module's own: on the suite's shared one, the session's cluster-admin
# operator would reconcile these ModelServices too (their claims made before ours asks), and ours
# would reconcile other tests' leftovers in namespaces being deleted.
pytestmark = pytest.mark.cluster
CACHE_CLASS = "torchship-permissions-test"


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory) -> Iterator[testenv.ControlPlane]:
    plane = testenv.ControlPlane(
        workdir=tmp_path_factory.mktemp("permissions-cp"), bin_dir=testenv.build_binaries()
    )
    plane.start()
    try:
        install_crds(plane)
        yield plane
    finally:
        plane.stop()


GATEWAY_CRDS = ("httproutes", "gateways", "gatewayclasses", "grpcroutes", "referencegrants")


def msvc(name: str, version: str = "v1", **spec) -> str:
    model = {"uri": "https://models.example.com/m.pt", "format": "torchscript", "version": version}
    return json.dumps(
        {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": name},
            "spec": {"model": model | spec.pop("model", {}), **spec},
        }
    )


def apply(control_plane, namespace: str, body: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=body)


def live(control_plane, namespace: str, name: str) -> dict:
    return get_json(control_plane, "msvc", name, "-n", namespace)


def progressing(control_plane, namespace: str, name: str, reason: str) -> dict | None:
    obj = live(control_plane, namespace, name)
    return obj if condition(obj, "Progressing").get("reason") == reason else None


def rolled_out(control_plane, namespace: str, name: str, version: str) -> dict | None:
    obj = live(control_plane, namespace, name)
    deployments = get_json(
        control_plane, "deployments", "-n", namespace, "-l", f"torchship.dev/modelservice={name}"
    )["items"]
    versions = {
        d["metadata"]["labels"]["app.kubernetes.io/version"]
        for d in deployments
        if d["spec"]["replicas"] > 0
    }
    done = condition(obj, "Progressing").get("reason") == "RolloutComplete"
    return obj if done and versions == {version} else None


def requests_of(control_plane, user: str, since: str) -> list[dict]:
    return [
        e
        for e in control_plane.audit_events()
        if e["user"]["username"] == user and e["requestReceivedTimestamp"] > since
    ]


def made(events: list[dict], verb: str, resource: str, subresource: str | None = None) -> bool:
    return any(
        e["verb"] == verb
        and e.get("objectRef", {}).get("resource") == resource
        and e.get("objectRef", {}).get("subresource") == subresource
        and e["responseStatus"]["code"] < 300
        for e in events
    )


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_every_feature_runs_under_exactly_the_charts_rules(own_plane, tmp_path: Path, mode):
    control_plane = own_plane
    namespace = f"perm-{mode}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("apply", "--server-side", "-f", str(testenv.gateway_api_crds()))
    control_plane.wait_established(
        *(f"{plural}.gateway.networking.k8s.io" for plural in GATEWAY_CRDS)
    )
    suffix = uuid.uuid4().hex[:6]
    system = f"ts-perm-{suffix}"
    control_plane.kubectl("create", "namespace", system)
    release = f"perm-{suffix}"
    values = {
        "gatewayAPI": {"enabled": True},
        "leaderElection": {"enabled": True, "leaseName": release},
        **({"watchNamespaces": [namespace]} if mode == "namespaced" else {}),
    }
    product = f"NVIDIA-T4-{suffix}"
    room_nodes = [testenv.FakeNode(f"gpu-t4-{suffix}-0", gpus=2, product=product)]
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [testenv.node_manifest(n) for n in room_nodes],
    }
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(listed))
    volume = f"{namespace}-cache"
    control_plane.writable_volume(volume, CACHE_CLASS)
    account = install_rbac(control_plane, system, values, release=release)
    kubeconfig = service_account_kubeconfig(control_plane, system, account, tmp_path)
    user = f"system:serviceaccount:{system}:{account}"
    settings = {
        "TORCHSHIP_LEADER_ELECTION": "true",
        "TORCHSHIP_LEASE_NAME": release,
        "TORCHSHIP_LEASE_NAMESPACE": system,
        **({"TORCHSHIP_NAMESPACES": namespace} if mode == "namespaced" else {}),
    }
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    log = tmp_path / "operator.log"
    running = harness.start_operator(
        {**control_plane.env, "KUBECONFIG": str(kubeconfig)}, log, **settings
    )
    try:
        wait_for(lambda: "leading: holding Lease" in log.read_text(), timeout=60)
        exercise(control_plane, namespace, product)
        time.sleep(3)  # the audit log's batch is written
        events = requests_of(control_plane, user, since)
    finally:
        harness.stop(running.proc, 20)
        remove_rbac(control_plane, system, values, release=release)
        control_plane.kubectl("delete", "namespace", system, "--wait=false", check=False)
        control_plane.kubectl("delete", "msvc", "--all", "-n", namespace, "--wait=false")
        control_plane.kubectl("delete", "node", *(n.name for n in room_nodes), "--wait=false")
        control_plane.kubectl("delete", "pv", volume, "--wait=false", check=False)

    denied = sorted(
        {
            (e["verb"], e.get("objectRef", {}).get("resource"), e["requestURI"].split("?")[0])
            for e in events
            if e["responseStatus"]["code"] == 403
        }
    )
    assert denied == [], denied
    assert not [line for line in log.read_text().splitlines() if "Forbidden" in line]
    # Each feature's requests were made, and allowed.
    wanted = [
        ("get", "persistentvolumeclaims", None),  # the model cache (server-side apply: patch)
        ("patch", "persistentvolumeclaims", None),
        ("list", "persistentvolumeclaims", None),
        ("get", "jobs", None),
        ("patch", "jobs", None),
        ("patch", "pods", None),  # MakeRoom: the pod that gives its GPU up
        ("patch", "deployments", "scale"),
        ("list", "nodes", None),  # the GPU offer
        ("get", "httproutes", None),  # Gateway API routing
        ("patch", "httproutes", None),
        ("watch", "pods", None),  # the pods analysis reads
        ("create", "leases", None),  # leader election
        ("update", "leases", None),
        ("patch", "modelservices", "status"),
        ("create", "events", None),
    ]
    if mode == "cluster-wide":
        wanted.append(("list", "pods", None))  # what is free on the GPU nodes
    missing = [w for w in wanted if not made(events, *w)]
    assert missing == [], missing


def exercise(control_plane, namespace: str, product: str) -> None:
    """Each feature once, waited for until the operator has done its part."""
    cache = {"cache": {"size": "1Gi", "storageClassName": CACHE_CLASS}}
    apply(control_plane, namespace, msvc("cached", model=cache))
    gateway = {"name": "web", "sectionName": "http"}
    routed = {"strategy": "RollingUpdate", "trafficRouting": "gateway-api", "gateway": gateway}
    apply(control_plane, namespace, msvc("routed", rollout=routed))
    apply(control_plane, namespace, msvc("nowhere", gpu={"count": 1, "product": "NVIDIA-B200"}))
    room = {"replicas": 2, "gpu": {"count": 1, "product": product}}
    apply(control_plane, namespace, msvc("room", rollout={"whenFull": "MakeRoom"}, **room))
    analysis = {"maxErrorRatio": 0.1, "minRequests": 1, "intervalSeconds": 5}
    canary = {"strategy": "Canary", "steps": [{"weight": 50, "pauseSeconds": 1}]}
    canary["analysis"] = analysis
    apply(control_plane, namespace, msvc("canary", replicas=2, rollout=canary))

    for name in ("cached", "routed", "room", "canary"):
        wait_for(lambda n=name: rolled_out(control_plane, namespace, n, "v1"), timeout=90)
    obj = wait_for(
        lambda: (
            (o := live(control_plane, namespace, "nowhere"))
            and condition(o, "Ready").get("reason") == "WaitingForGPU"
            and o
        ),
        timeout=60,
    )
    assert "nodes with that product: none" in condition(obj, "Ready")["message"]
    control_plane.kubectl("get", "httproute", "routed", "-n", namespace)
    # New versions: the room rollout gives an old pod up, the canary is analysed.
    apply(control_plane, namespace, msvc("room", "v2", rollout={"whenFull": "MakeRoom"}, **room))
    apply(control_plane, namespace, msvc("canary", "v2", replicas=2, rollout=canary))
    wait_for(lambda: rolled_out(control_plane, namespace, "room", "v2"), timeout=120)
    wait_for(lambda: progressing(control_plane, namespace, "canary", "AwaitingAnalysis"), 60)
