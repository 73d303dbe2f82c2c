"""The core reconcile loop against the real control plane (issue: API and reconcile)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import testenv
from helpers import condition, get_json, wait_for

from torchship_operator.reconcilers import gpu_offer

ROOT = Path(__file__).resolve().parents[2]


def msvc(name: str, **spec) -> str:
    body = {
        "apiVersion": "torchship.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": "https://models.example.com/m.pt", "format": "torchscript"}}
        | spec,
    }
    return json.dumps(body)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wait_ready(control_plane, namespace: str, ref: str, timeout: int = 60) -> None:
    """Rolled out and serving: no rollout under way for the latest spec, then Ready (a rollout
    keeps Ready while every replica serves)."""
    for wanted in ("Progressing=False", "Ready"):
        control_plane.kubectl(
            "wait", "-n", namespace, f"--for=condition={wanted}", ref, f"--timeout={timeout}s"
        )


def deployments(control_plane, namespace: str) -> list[dict]:
    return get_json(control_plane, "deployments", "-n", namespace)["items"]


def gpu_pods(control_plane) -> list[str]:
    """Pods anywhere that still hold a GPU (not finished)."""
    return [
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in get_json(control_plane, "pods", "-A")["items"]
        if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        and any(
            "nvidia.com/gpu" in (c.get("resources") or {}).get("limits", {})
            for c in p["spec"]["containers"]
        )
    ]


def test_an_unmeetable_gpu_request_waits_for_a_gpu_saying_what_the_nodes_offer(
    control_plane, operator, namespace
):
    # The offer counts exactly what the kwok nodes have free: earlier tests' GPU pods gone, one
    # GPU of the A10 node held here, and the operator's last node read (kept CACHE_SECONDS)
    # older than that.
    wait_for(lambda: not gpu_pods(control_plane), timeout=90)
    holder = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "holds-a-gpu"},
        "spec": {
            "nodeName": "gpu-a10-0",
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ],
        },
    }
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(holder))
    time.sleep(gpu_offer.CACHE_SECONDS + 1)
    spec = {"gpu": {"count": 1, "product": "NVIDIA-B200"}, "replicas": 1}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("nowhere", **spec))
    started = time.monotonic()

    def waiting():
        ready = condition(get_json(control_plane, "msvc", "nowhere", "-n", namespace), "Ready")
        return ready if ready.get("reason") == "WaitingForGPU" else None

    ready = wait_for(waiting, timeout=30)
    assert time.monotonic() - started < 30
    assert ready["status"] == "False"
    # What was asked, what the (kwok) GPU nodes offer, then the scheduler's own words.
    asked, *offered, scheduler = ready["message"].split("; ")
    assert asked == "needs 1 nvidia.com/gpu on nvidia.com/gpu.product=NVIDIA-B200"
    assert offered[0] == "nodes with that product: none"
    gpus = {
        product: sum(n.gpus for n in testenv.FAKE_NODES if n.product == product)
        for product in ("NVIDIA-A10", "NVIDIA-H100-80GB-HBM3")
    }
    assert offered[1:] == [
        f"NVIDIA-A10: 1 node, {gpus['NVIDIA-A10'] - 1} free",  # one held by holds-a-gpu
        f"NVIDIA-H100-80GB-HBM3: 2 nodes, {gpus['NVIDIA-H100-80GB-HBM3']} free",
    ], offered
    assert scheduler.startswith("scheduler: 0/")
    assert "nodes are available" in scheduler and "node affinity/selector" in scheduler
    degraded = condition(get_json(control_plane, "msvc", "nowhere", "-n", namespace), "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "WaitingForGPU")
    # No retry storm: once reported, nothing more is written while nothing changes.
    time.sleep(3)
    since = utc_now()
    time.sleep(10)
    assert operator.writes(control_plane, namespace, since) == []
    events = get_json(control_plane, "events", "-n", namespace)["items"]
    warnings = [
        e
        for e in events
        if e["reason"] == "WaitingForGPU" and e["source"].get("component") == "torchship-operator"
    ]
    assert len(warnings) == 1


INVALID = [
    ({"gpu": {"count": -1}}, "spec.gpu.count in body should be greater than or equal to 0"),
    ({"gpu": {"count": 1, "resourceName": "GPU!"}}, "spec.gpu.resourceName in body should match"),
    (
        {"gpu": {"product": "NVIDIA-A10"}},
        "gpu.product selects GPU nodes, so it needs gpu.count > 0",
    ),
    (
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "autoscaling.minReplicas must not be greater than",
    ),
    (
        {"model": {"uri": "ftp://host/m.pt", "format": "torchscript"}},
        "model.uri must start with file://",
    ),
    ({"model": {"uri": "/m.onnx", "format": "onnx"}}, 'Unsupported value: "onnx"'),
    (
        {"model": {"uri": "/w.pt", "format": "state-dict"}},
        "model.entrypoint (module:callable) is required",
    ),
    ({"replicas": "two"}, "spec.replicas"),
    ({"runtime": {"device": "cuda"}}, "runtime.device cuda needs gpu.count > 0"),
    (
        {"runtime": {"device": "cuda", "quantize": "dynamic-int8"}, "gpu": {"count": 1}},
        "dynamic-int8 runs on CPU only",
    ),
    ({"rollout": {"strategy": "Canary"}}, "rollout.strategy Canary needs at least one step"),
    ({"rollout": {"maxSurge": 0, "maxUnavailable": 0}}, "cannot both be 0"),
    (
        {"rollout": {"strategy": "Canary", "steps": [{"weight": 150}]}},
        "should be less than or equal to 100",
    ),
    (
        {"runtime": {"batching": {"maxBatchSize": 0}}},
        "maxBatchSize in body should be greater than or equal to 1",
    ),
    ({"unknownField": 1}, 'unknown field "spec.unknownField"'),
    (
        {"model": {"uri": "pvc://Bad_Claim/m.pt", "format": "torchscript"}},
        "needs a PersistentVolumeClaim name",
    ),
    (
        {"runtime": {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]}},
        "either value or valueFrom, not both",
    ),
    (
        {"runtime": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
        'spec.runtime.env[1]: Duplicate value: {"name":"A"}',
    ),
    ({"autoscaling": {"maxReplicas": 0}}, "maxReplicas in body should be greater than or equal"),
    ({"gpu": {"count": 1, "tolerations": "all"}}, "spec.gpu.tolerations: Invalid value"),
    (
        {"autoscaling": {"minReplicas": 0, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas in body should be greater than or equal to 1",
    ),
    ({"rollout": {"trafficRouting": "istio"}}, 'Unsupported value: "istio"'),
    (
        {"rollout": {"trafficRouting": "gateway-api"}},
        "rollout.trafficRouting gateway-api needs rollout.gateway",
    ),
    ({"rollout": {"gateway": {"name": "web"}}}, "rollout.gateway is used by trafficRouting"),
    (
        {
            "model": {"uri": "/m.pt", "format": "state-dict", "entrypoint": "m:build"},
            "runtime": {"compile": {"mode": "reduce-overhead", "aheadOfTime": True}},
        },
        "runtime.compile.aheadOfTime has no CUDA graphs (reduce-overhead)",
    ),
    (
        {"rollout": {"analysis": {"maxErrorRatio": 0.05}}},
        "rollout.analysis judges canary steps: set rollout.strategy Canary",
    ),
    (
        {"rollout": {"strategy": "Canary", "steps": [{"weight": 10}], "analysis": {}}},
        "rollout.analysis needs at least one of maxErrorRatio",
    ),
    (
        {
            "rollout": {
                "strategy": "Canary",
                "steps": [{"weight": 10}],
                "analysis": {"maxErrorRatio": 5},
            }
        },
        "spec.rollout.analysis.maxErrorRatio in body should be less than or equal to 1",
    ),
    (
        {"model": {"uri": "/m.pt", "format": "torchscript", "entrypoint": "m:build"}},
        "model.entrypoint is used by the state-dict and handler formats only",
    ),
    (
        {
            "model": {
                "uri": "/m.pt2",
                "format": "exported-program",
                "inputs": [{"name": "q", "datatype": "BYTES", "shape": [-1]}],
            }
        },
        "BYTES inputs are served by the handler format only",
    ),
    (
        {"runtime": {"device": "cpu", "quantize": "dynamic-int8"}},
        "runtime.quantize dynamic-int8 needs model.format state-dict",
    ),
    (
        {
            "model": {"uri": "/w.pt", "format": "state-dict", "entrypoint": "m:build"},
            "runtime": {"device": "cpu", "quantize": "dynamic-int8", "dtype": "bfloat16"},
        },
        "dynamic-int8 quantizes float32 Linear layers",
    ),
    (
        {
            "model": {"uri": "/h.pt", "format": "handler", "entrypoint": "h:H"},
            "runtime": {"dtype": "bfloat16"},
        },
        "a handler chooses its own dtype",
    ),
]


@pytest.mark.parametrize(("spec", "message"), INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_modelservices_are_rejected_with_a_clear_message(
    control_plane, crds, namespace, spec, message
):
    result = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=msvc("invalid", **spec), check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


SAMPLES = [*sorted((ROOT / "examples").glob("*.yaml")), ROOT / "tests/golden/full-spec.input.yaml"]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_manifest_is_accepted(control_plane, crds, namespace, path: Path):
    result = control_plane.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", str(path), check=False
    )
    assert result.returncode == 0, result.stderr


def test_bad_names_are_rejected(control_plane, crds, namespace):
    result = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=msvc("a" * 60), check=False
    )
    assert "at most 52 characters" in result.stderr


def test_drift_is_reverted_scale_works_and_delete_cascades(control_plane, operator, namespace):
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("drift", replicas=1))
    wait_ready(control_plane, namespace, "msvc/drift")
    (deployment,) = deployments(control_plane, namespace)
    name = deployment["metadata"]["name"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]

    control_plane.kubectl(
        "set", "image", f"deployment/{name}", "runtime=evil:latest", "-n", namespace
    )
    control_plane.kubectl("scale", f"deployment/{name}", "--replicas=4", "-n", namespace)

    def reverted():
        d = get_json(control_plane, "deployment", name, "-n", namespace)
        container = d["spec"]["template"]["spec"]["containers"][0]
        return container["image"] == image and d["spec"]["replicas"] == 1

    wait_for(reverted, timeout=30)

    # The Service too; and a person sees that it happened.
    control_plane.kubectl(
        "patch", "service", "drift", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"selector":{"app":"other"}}}',
    )  # fmt: skip
    wait_for(
        lambda: (
            get_json(control_plane, "service", "drift", "-n", namespace)["spec"]["selector"]
            == {"torchship.dev/modelservice": "drift"}
        ),
        timeout=30,
    )
    events = get_json(control_plane, "events", "-n", namespace)["items"]
    corrected = {e["message"] for e in events if e["reason"] == "DriftCorrected"}
    assert "Service drift was changed outside torchship; its managed fields were restored" in (
        corrected
    ), corrected

    control_plane.kubectl("scale", "msvc/drift", "--replicas=3", "-n", namespace)
    wait_for(
        lambda: (
            get_json(control_plane, "deployment", name, "-n", namespace)["spec"]["replicas"] == 3
        )
    )
    wait_ready(control_plane, namespace, "msvc/drift")
    assert get_json(control_plane, "msvc", "drift", "-n", namespace)["status"]["readyReplicas"] == 3

    control_plane.kubectl("delete", "msvc/drift", "-n", namespace)
    wait_for(lambda: not deployments(control_plane, namespace), timeout=60)
    wait_for(
        lambda: (
            control_plane.kubectl(
                "get", "service", "drift", "-n", namespace, check=False
            ).returncode
            != 0
        )
    )


def test_converged_operator_makes_no_writes(control_plane, operator, namespace):
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("quiet", replicas=2))
    wait_ready(control_plane, namespace, "msvc/quiet")
    time.sleep(3)  # late events of the rollout settle
    since = utc_now()
    time.sleep(30)
    writes = operator.writes(control_plane, namespace, since)
    assert writes == [], [(w["verb"], w["objectRef"]) for w in writes]
    # ...and applying the same manifest again changes nothing (GitOps diff-stable).
    before = get_json(control_plane, "msvc", "quiet", "-n", namespace)["metadata"][
        "resourceVersion"
    ]
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("quiet", replicas=2))
    after = get_json(control_plane, "msvc", "quiet", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before
    # kopf's storage uses the operator's prefix (torchship.dev/); nothing of it, nor anything
    # else, is written on the object: only kubectl's own annotation is there.
    annotations = set(after["metadata"].get("annotations", {}))
    assert annotations == {"kubectl.kubernetes.io/last-applied-configuration"}, annotations
    assert "finalizers" not in after["metadata"]


def test_runtime_pods_are_admitted_under_pod_security_restricted(
    control_plane, operator, namespace
):
    control_plane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    spec = {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}, "replicas": 1}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("secure", **spec))
    wait_ready(control_plane, namespace, "msvc/secure")
    events = get_json(control_plane, "events", "-n", namespace)["items"]
    assert not [e for e in events if "violates PodSecurity" in e.get("message", "")]
