"""The local control plane is real: scheduling, GPU capacity, garbage collection, PodSecurity."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import get_json, wait_for


def test_binaries_report_their_release(control_plane):
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert version["serverVersion"]["gitVersion"] == version["clientVersion"]["gitVersion"]
    assert "v0.0.0" not in version["serverVersion"]["gitVersion"]


def test_fake_nodes_advertise_gpus_and_taints(control_plane):
    nodes = {n["metadata"]["name"]: n for n in get_json(control_plane, "nodes")["items"]}
    assert {"gpu-h100-0", "gpu-h100-1", "gpu-a10-0", "cpu-0"} <= set(nodes)
    for name, node in nodes.items():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", name
        assert node["status"]["addresses"][0]["address"].startswith("127.")
    h100 = nodes["gpu-h100-0"]
    assert h100["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert h100["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in h100["spec"][
        "taints"
    ]
    assert "nvidia.com/gpu" not in nodes["cpu-0"]["status"]["allocatable"]


GPU_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{nvidia.com/gpu.product: {product}}}
      tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
      containers:
      - name: model
        image: registry.invalid/model:1
        resources: {{limits: {{nvidia.com/gpu: {gpus}}}}}
"""


def test_gpu_deployment_is_scheduled_on_a_matching_node_and_becomes_ready(control_plane, namespace):
    manifest = GPU_DEPLOYMENT.format(name="a10", replicas=2, product="NVIDIA-A10", gpus=1)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/a10", "--timeout=60s"
    )
    pods = get_json(control_plane, "pods", "-n", namespace)["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "gpu-a10-0"
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("127.")


def test_pod_asking_for_more_gpus_than_any_node_stays_pending(control_plane, namespace):
    manifest = GPU_DEPLOYMENT.format(
        name="greedy", replicas=1, product="NVIDIA-H100-80GB-HBM3", gpus=8
    )
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    def unschedulable():
        pods = get_json(control_plane, "pods", "-n", namespace)["items"]
        for pod in pods:
            for cond in pod["status"].get("conditions", []):
                if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return pod, cond
        return None

    pod, cond = wait_for(unschedulable)
    assert pod["status"]["phase"] == "Pending"
    assert "nvidia.com/gpu" in cond["message"]
    events = get_json(control_plane, "events", "-n", namespace)["items"]
    assert any(e["reason"] == "FailedScheduling" for e in events)


def test_deleting_an_owner_garbage_collects_its_dependents(control_plane, namespace):
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = get_json(control_plane, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(dependent))
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: (
            control_plane.kubectl(
                "get", "configmap", "dependent", "-n", namespace, check=False
            ).returncode
            != 0
        )
    )


@pytest.mark.parametrize("enforce", ["restricted"])
def test_pod_security_restricted_rejects_a_privileged_pod(control_plane, namespace, enforce):
    control_plane.kubectl(
        "label", "namespace", namespace, f"pod-security.kubernetes.io/enforce={enforce}"
    )
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "registry.invalid/x:1",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    result = control_plane.kubectl("apply", "-f", "-", input=json.dumps(privileged), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "privileged" in result.stderr


def test_audit_log_records_writes_by_user(control_plane, namespace):
    control_plane.kubectl("create", "configmap", "audited", "-n", namespace)

    def seen():
        return [
            e
            for e in control_plane.audit_events()
            if e.get("objectRef", {}).get("namespace") == namespace
            and e.get("objectRef", {}).get("name") == "audited"
        ]

    (event,) = wait_for(seen, timeout=10)
    assert event["verb"] == "create"
    assert event["user"]["username"] == "admin"


def test_other_identities_get_their_own_credentials_and_rbac_applies(control_plane, namespace):
    kubeconfig = control_plane.kubeconfig_for("someone")
    env = {**control_plane.env, "KUBECONFIG": str(kubeconfig)}
    kubectl = str(control_plane.bin_dir / "kubectl")
    denied = subprocess.run(
        [kubectl, "get", "secrets", "-n", namespace], env=env, capture_output=True, text=True
    )
    assert denied.returncode != 0
    assert 'User "someone" cannot list resource "secrets"' in denied.stderr
