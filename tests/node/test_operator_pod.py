"""The operator image's entry point, run as a pod on the real node by the Helm chart with the
chart's ServiceAccount, reconciles a ModelService."""

from __future__ import annotations

import json
import uuid

from delivery.helmchart import CHART, helm, value_args
from helpers import get_json, wait_for
from workload import OPERATOR_IMAGE


def test_the_operator_image_reconciles_as_a_pod_with_the_charts_account(
    real_plane, only_the_operator_pod, tmp_path
):
    suffix = uuid.uuid4().hex[:6]
    operator_ns, models_ns, release = f"ts-system-{suffix}", f"ts-models-{suffix}", "op"
    for ns in (operator_ns, models_ns):
        real_plane.kubectl("create", "namespace", ns)
    real_plane.kubectl(
        "label", "namespace", operator_ns, "pod-security.kubernetes.io/enforce=restricted"
    )
    repository, tag = OPERATOR_IMAGE.rsplit(":", 1)
    node = real_plane.node
    values = {
        "crds": {"install": False},  # installed by the session fixture
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [models_ns],
        # The pod reaches the API server at the node's own address (its relay), never at the
        # `kubernetes` Service's ClusterIP: nothing here routes ClusterIPs.
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": node.slot.node_ip},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(node.apiserver_port)},
        ],
    }
    try:
        helm(
            "install", release, str(CHART), "--namespace", operator_ns, "--wait",
            "--timeout", "4m", *value_args(values, tmp_path),
            env=real_plane.env, timeout=300,
        )  # fmt: skip
        (pod,) = get_json(
            real_plane, "pods", "-n", operator_ns, "-l", "app.kubernetes.io/name=torchship"
        )["items"]
        assert pod["spec"]["nodeName"] == node.name
        assert pod["spec"]["serviceAccountName"] == f"{release}-torchship"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] and status["image"] == OPERATOR_IMAGE

        # A GPU ModelService: reconciled by the pod, its replicas placed on kwok's H100 nodes.
        manifest = {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "placed", "namespace": models_ns},
            "spec": {
                "model": {"uri": "s3://models/placed/model.pt", "format": "torchscript"},
                "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"},
                "replicas": 2,
            },
        }
        real_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        waited = real_plane.kubectl(
            "wait", "-n", models_ns, "--for=condition=Ready", "msvc/placed", "--timeout=120s",
            timeout=150, check=False,
        )  # fmt: skip
        logs = real_plane.kubectl("logs", "-n", operator_ns, pod["metadata"]["name"]).stdout
        assert waited.returncode == 0, f"{waited.stderr}\noperator's log:\n{logs[-3000:]}"
        placed = get_json(real_plane, "pods", "-n", models_ns)["items"]
        assert len(placed) == 2 and all(
            p["spec"]["nodeName"].startswith("gpu-h100") for p in placed
        )
        assert "placed" in logs, logs[-2000:]
        # Its deployment is the operator's: written by the pod's ServiceAccount identity.
        writers = wait_for(
            lambda: {
                e["user"]["username"]
                for e in real_plane.audit_events()
                if e.get("objectRef", {}).get("namespace") == models_ns
                and e.get("objectRef", {}).get("resource") == "deployments"
                # The controller-manager writes their status; the spec is the operator's.
                and not e["objectRef"].get("subresource")
            },
            timeout=30,
        )
        assert writers == {f"system:serviceaccount:{operator_ns}:{release}-torchship"}
    finally:
        helm("uninstall", release, "--namespace", operator_ns, env=real_plane.env, check=False)
        for ns in (operator_ns, models_ns):
            real_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
