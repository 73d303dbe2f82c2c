"""The operator process: metrics, liveness, least-privilege RBAC and leader election, on the real
control plane. Only loopback is contacted (the operator's own ports)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import yaml
from helpers import get_json, wait_for
from operatorprocess import ROOT, paused, start_operator, stop_operator
from test_modelservice import msvc, utc_now

from torchship_operator import rbac


def fetch(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{key} not in metrics")


def test_metrics_and_liveness(control_plane, operator, namespace):
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("watched", replicas=1))
    control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "msvc/watched", "--timeout=60s"
    )
    status, text = fetch(operator.metrics_port, "/metrics")
    assert status == 200
    assert sample(text, "torchship_reconciles_total", result="success") >= 1
    assert sample(text, "torchship_reconcile_duration_seconds_count") >= 1
    for resource in ("deployments", "services", "modelservices/status", "events"):
        assert sample(text, "torchship_api_writes_total", resource=resource) >= 1, resource
    wait_for(
        lambda: (
            sample(
                fetch(operator.metrics_port, "/metrics")[1], "torchship_modelservices", ready="true"
            )
            >= 1
        )
    )
    status, body = fetch(operator.health_port, "/healthz")
    assert status == 200
    assert "workqueue" in json.loads(body)


def test_a_restarted_operator_writes_nothing_to_converged_modelservices(
    control_plane, operator, namespace, tmp_path: Path
):
    """Everything a fresh process computes from the cluster equals what is stored: no apply, no
    status patch (a restart or a new leader costs no writes, even at a thousand objects)."""
    for name in ("plain", "versioned"):
        spec = {"replicas": 2} if name == "plain" else {"replicas": 1, "gpu": {"count": 1}}
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc(name, **spec))
    for name in ("plain", "versioned"):
        control_plane.kubectl(
            "wait", "-n", namespace, "--for=condition=Ready", f"msvc/{name}", "--timeout=60s"
        )
    time.sleep(3)  # late events settle
    with paused(operator):
        fresh = start_operator(control_plane, tmp_path / "fresh.log", user="torchship-fresh")
        try:
            since = utc_now()
            wait_for(lambda: "operator started" in fresh.log.read_text(), timeout=30)
            time.sleep(10)
            writes = fresh.writes(control_plane, namespace, since)
            assert writes == [], [(w["verb"], w["objectRef"]) for w in writes]
        finally:
            stop_operator(fresh)


def owned(control_plane, namespace: str, name: str) -> list[dict]:
    selector = f"torchship.dev/modelservice={name}"
    return get_json(control_plane, "deployments", "-n", namespace, "-l", selector)["items"]


def replicas_of(control_plane, namespace: str, name: str) -> list[int]:
    return [d["spec"]["replicas"] for d in owned(control_plane, namespace, name)]


def versions_of(control_plane, namespace: str, name: str) -> list[str]:
    return [
        d["metadata"]["labels"]["app.kubernetes.io/version"]
        for d in owned(control_plane, namespace, name)
    ]


def test_the_documented_rbac_is_enough(control_plane, operator, namespace, tmp_path: Path):
    """Another operator, with only `torchship_operator.rbac` rules, does the whole job alone."""
    user = "torchship-rbac"
    role = rbac.cluster_role("torchship-test-operator")
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "torchship-test-operator"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    with paused(operator):
        limited = start_operator(control_plane, tmp_path / "rbac.log", user=user, groups=())
        try:
            since = utc_now()
            control_plane.kubectl(
                "apply", "-n", namespace, "-f", str(ROOT / "examples" / "gpu-model.yaml")
            )
            control_plane.kubectl(
                "wait",
                "-n",
                namespace,
                "--for=condition=Ready",
                "msvc/resnet-h100",
                "--timeout=60s",
            )
            control_plane.kubectl("scale", "msvc/resnet-h100", "--replicas=3", "-n", namespace)
            wait_for(lambda: replicas_of(control_plane, namespace, "resnet-h100") == [3])
            # A new revision with no history kept: the old Deployment is deleted (prune).
            for version in ("v1", "v2"):
                model = {"uri": "/m.pt", "format": "torchscript", "version": version}
                body = msvc("pruned", model=model, rollout={"revisionHistoryLimit": 0})
                control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=body)
                wait_for(lambda v=version: versions_of(control_plane, namespace, "pruned") == [v])
            writes = [
                e
                for e in control_plane.audit_events()
                if e["user"]["username"] == user and e["requestReceivedTimestamp"] > since
            ]
            assert writes, "the limited operator wrote nothing"
            assert any(
                e["verb"] == "delete" and e["objectRef"]["resource"] == "deployments"
                for e in writes
            ), "no prune ran under the documented rules"
            denied = [
                (e["verb"], e["objectRef"]) for e in writes if e["responseStatus"]["code"] == 403
            ]
            assert denied == []
        finally:
            stop_operator(limited)
    log = limited.log.read_text()
    # A denial reads "Forbidden", "(403)" or "status=403"; a bare "403" is also a log line's
    # milliseconds.
    assert not re.search(r"Forbidden|\(403\)|status=403", log), log[-3000:]


def test_leader_election_lets_one_of_two_act(control_plane, operator, namespace, tmp_path: Path):
    env = {
        "TORCHSHIP_LEADER_ELECTION": "true",
        "TORCHSHIP_LEASE_NAME": "torchship",
        "TORCHSHIP_LEASE_NAMESPACE": namespace,
    }
    with paused(operator):
        first = start_operator(control_plane, tmp_path / "a.log", user="torchship-a", **env)
        second = start_operator(control_plane, tmp_path / "b.log", user="torchship-b", **env)
        running = [first, second]
        try:
            # One takes the Lease; the other, up and watching, waits.
            wait_for(lambda: sum(r.leads() for r in running) == 1, timeout=60)
            leader, standby = running if first.leads() else (second, first)
            wait_for(lambda: "operator started" in standby.log.read_text(), timeout=60)
            lease = get_json(control_plane, "lease", "torchship", "-n", namespace)
            assert lease["spec"]["holderIdentity"].rsplit("_", 2)[1] == str(leader.process.pid)
            since = utc_now()
            control_plane.kubectl(
                "apply", "-n", namespace, "-f", "-", input=msvc("led", replicas=1)
            )
            control_plane.kubectl(
                "wait", "-n", namespace, "--for=condition=Ready", "msvc/led", "--timeout=60s"
            )
            assert leader.writes(control_plane, namespace, since)
            assert standby.writes(control_plane, namespace, since) == []

            # The leader stops cleanly and releases the Lease; the standby takes over at once.
            stop_operator(leader)
            assert leader.process.returncode in (0, -15)
            wait_for(lambda: standby.leads(), timeout=10, interval=0.2)
            since = utc_now()
            control_plane.kubectl("scale", "msvc/led", "--replicas=2", "-n", namespace)
            wait_for(
                lambda: (
                    [
                        d["spec"]["replicas"]
                        for d in get_json(control_plane, "deployments", "-n", namespace)["items"]
                    ]
                    == [2]
                ),
                timeout=60,
            )
            assert standby.writes(control_plane, namespace, since)
            lease = get_json(control_plane, "lease", "torchship", "-n", namespace)
            assert lease["spec"]["leaseTransitions"] == 1
        finally:
            for r in running:
                stop_operator(r)


def test_a_namespaced_operator_acts_in_its_namespaces_only(
    control_plane, operator, namespace, tmp_path: Path
):
    """TORCHSHIP_NAMESPACES, with leader election on a Lease in that namespace."""
    elsewhere = f"{namespace}-x"[:63]
    control_plane.kubectl("create", "namespace", elsewhere)
    env = {
        "TORCHSHIP_NAMESPACES": namespace,
        "TORCHSHIP_LEADER_ELECTION": "true",
        "TORCHSHIP_LEASE_NAMESPACE": namespace,
    }
    try:
        with paused(operator):
            scoped = start_operator(
                control_plane, tmp_path / "scoped.log", user="torchship-ns", **env
            )
            try:
                for ns in (namespace, elsewhere):
                    control_plane.kubectl("apply", "-n", ns, "-f", "-", input=msvc("scoped"))
                control_plane.kubectl(
                    "wait", "-n", namespace, "--for=condition=Ready", "msvc/scoped", "--timeout=60s"
                )
                lease = get_json(control_plane, "lease", "torchship", "-n", namespace)
                assert lease["spec"]["holderIdentity"]
                time.sleep(3)
                assert get_json(control_plane, "deployments", "-n", elsewhere)["items"] == []
                untouched = get_json(control_plane, "msvc", "scoped", "-n", elsewhere)
                assert "status" not in untouched
            finally:
                stop_operator(scoped)
            # With the cluster-scoped reads it has, it does not claim to lack them.
            assert "no cluster-wide watch" not in scoped.log.read_text()
    finally:
        control_plane.kubectl("delete", "namespace", elsewhere, "--wait=false", check=False)


def test_a_namespaced_operator_without_discovery_warns_and_still_serves(
    control_plane, operator, namespace, tmp_path: Path
):
    """rbac.discovery off: only a Role in the watched namespace, nothing cluster-scoped; leader
    election on a Lease there, under exactly the lease rules."""
    user = "torchship-no-discovery"
    cluster_scoped = {"customresourcedefinitions", "namespaces"}
    rules = [r for r in rbac.RULES if not cluster_scoped & set(r["resources"])]
    rules += rbac.lease_rules("torchship")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "torchship", "namespace": namespace},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "torchship", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "torchship"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    with paused(operator):
        scoped = start_operator(
            control_plane, tmp_path / "scoped.log", user=user, groups=(),
            TORCHSHIP_NAMESPACES=namespace, TORCHSHIP_LEADER_ELECTION="true",
            TORCHSHIP_LEASE_NAMESPACE=namespace,
        )  # fmt: skip
        try:
            control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("alone"))
            control_plane.kubectl(
                "wait", "-n", namespace, "--for=condition=Ready", "msvc/alone", "--timeout=60s"
            )
        finally:
            stop_operator(scoped)
    log = scoped.log.read_text()
    assert "no cluster-wide watch of customresourcedefinitions and namespaces" in log, log[-3000:]
    assert f"serving namespaces {namespace} as listed" in log
    assert "leading: holding Lease" in log and "released Lease" in log
    assert "not read" not in log and "not written" not in log  # the Lease rules suffice
