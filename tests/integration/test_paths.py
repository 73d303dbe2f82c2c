"""Paths through the operator that only a real API server exercises: writes it refuses, a
webhook it cannot call, BlueGreen, manual canary promotion, env valueFrom, the HPA with memory,
in-flight and behavior, RuntimeClasses, and bearer-token auth end to end."""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path

import httpx
import modelfiles
from harness import serving
from helpers import condition, get_json, wait_for
from podenv import container_env
from test_modelservice import utc_now
from test_modelservice import wait_ready as msvc_ready
from test_rollouts import apply, model, split


def ready_reason(control_plane, namespace: str, name: str, reason: str, kind: str = "Ready"):
    def check():
        found = condition(get_json(control_plane, "msvc", name, "-n", namespace), kind)
        return found if found.get("reason") == reason else None

    return check


def operator_events(control_plane, namespace: str, reason: str) -> list[dict]:
    return [
        e
        for e in get_json(control_plane, "events", "-n", namespace)["items"]
        if e["reason"] == reason and e["source"].get("component") == "torchship-operator"
    ]


def live_ready_replicas(control_plane, namespace: str, name: str) -> int:
    return (
        get_json(control_plane, "msvc", name, "-n", namespace)
        .get("status", {})
        .get("readyReplicas", 0)
    )


def attempts(operator, control_plane, namespace: str, resource: str, since: str) -> int:
    """Write requests (refused ones too) the operator sent for `resource` after `since`."""
    return sum(
        1
        for w in operator.writes(control_plane, namespace, since)
        if w["objectRef"].get("resource") == resource
    )


def test_a_refused_child_write_is_in_status_with_the_api_servers_message_and_backs_off(
    control_plane, operator, namespace
):
    # The CRD passes behavior through; the HPA's own validation refuses this one.
    scaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "behavior": {"scaleUp": {"policies": [{"type": "Bogus", "value": 1, "periodSeconds": 60}]}},
    }
    apply(control_plane, namespace, "refused", autoscaling=scaling)
    ready = wait_for(ready_reason(control_plane, namespace, "refused", "ApplyRefused"), 30)
    assert ready["status"] == "False"
    assert ready["message"].startswith("HorizontalPodAutoscaler refused: ")
    assert 'Unsupported value: "Bogus"' in ready["message"], ready["message"]
    body = get_json(control_plane, "msvc", "refused", "-n", namespace)
    degraded = condition(body, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyRefused")
    assert degraded["observedGeneration"] == body["metadata"]["generation"]
    # Retried with back-off (0.5 s doubling), not in a hot loop; one Event says why. (Once the
    # pods are up: each of their events brings a pass forward, as any change does.)
    wait_for(lambda: live_ready_replicas(control_plane, namespace, "refused") == 1, 60)
    since = utc_now()
    time.sleep(12)
    tries = attempts(operator, control_plane, namespace, "horizontalpodautoscalers", since)
    assert tries <= 5, tries
    (event,) = operator_events(control_plane, namespace, "ApplyRefused")
    assert event["type"] == "Warning" and 'Unsupported value: "Bogus"' in event["message"]

    # Fixed: memory and in-flight requests with a behavior, as the HPA stores them.
    scaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [{"type": "memory", "target": 80}, {"type": "inflight", "target": 4}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}},
    }
    runtime = {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
    apply(control_plane, namespace, "refused", autoscaling=scaling, runtime=runtime)
    msvc_ready(control_plane, namespace, "msvc/refused")
    hpa = get_json(control_plane, "hpa", "refused", "-n", namespace)["spec"]
    memory, inflight = hpa["metrics"]
    assert (memory["type"], inflight["type"]) == ("Resource", "Pods")
    utilization = {"type": "Utilization", "averageUtilization": 80}
    assert memory["resource"] == {"name": "memory", "target": utilization}
    assert inflight["pods"]["metric"] == {"name": "torchship_inflight_requests"}
    assert inflight["pods"]["target"] == {"type": "AverageValue", "averageValue": "4"}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    assert (
        condition(get_json(control_plane, "msvc", "refused", "-n", namespace), "Degraded")["status"]
        == "False"
    )


def cluster_scoped(api_version: str, kind: str, prefix: str, namespace: str) -> dict:
    """A cluster-scoped object's head, named for the test's namespace (the name is
    cluster-wide: tests running side by side must not share it)."""
    name = f"{prefix}-{namespace}"[:63]
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_webhook_backs_off_with_one_reconcile_error_event(
    control_plane, operator, namespace
):
    webhook = {
        **cluster_scoped(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            "unreachable",
            namespace,
        ),
        "webhooks": [
            {
                "name": "unreachable.torchship.test",
                # Nothing listens there: the API server cannot call it and fails the request.
                "clientConfig": {"url": f"https://127.0.0.1:{closed_port()}/validate"},
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["deployments"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        ],
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(webhook))
    try:
        apply(control_plane, namespace, "hooked", replicas=1)
        (event,) = wait_for(lambda: operator_events(control_plane, namespace, "ReconcileError"), 30)
        assert "failed calling webhook" in event["message"], event["message"]
        since = utc_now()
        time.sleep(12)
        tries = attempts(operator, control_plane, namespace, "deployments", since)
        assert 1 <= tries <= 6, tries
        assert len(operator_events(control_plane, namespace, "ReconcileError")) == 1
    finally:
        control_plane.kubectl(
            "delete", "validatingwebhookconfiguration", webhook["metadata"]["name"]
        )
    # The next retry (back-off at most 16 s by now) goes through.
    msvc_ready(control_plane, namespace, "msvc/hooked", timeout=60)


def service_selector(control_plane, namespace: str, name: str) -> dict[str, str]:
    return get_json(control_plane, "service", name, "-n", namespace)["spec"]["selector"]


def test_blue_green_previews_then_switches_the_service_at_once(control_plane, operator, namespace):
    # Two A10 GPUs in the cluster: the new revision cannot come up beside the old in full.
    spec = {
        "gpu": {"count": 1, "product": "NVIDIA-A10"},
        "rollout": {"strategy": "BlueGreen"},
    }
    apply(control_plane, namespace, "bg", model=model("v1"), replicas=2, **spec)
    msvc_ready(control_plane, namespace, "msvc/bg")
    (blue,) = get_json(control_plane, "deployments", "-n", namespace)["items"]
    blue_revision = blue["metadata"]["labels"]["torchship.dev/revision"]
    assert service_selector(control_plane, namespace, "bg") == {"torchship.dev/modelservice": "bg"}

    apply(control_plane, namespace, "bg", model=model("v2"), replicas=2, **spec)
    # The preview: green has its full count asked for while the Service serves blue alone.
    wait_for(lambda: split(control_plane, namespace) == {"v1": 2, "v2": 2}, 30)
    wait_for(
        lambda: (
            service_selector(control_plane, namespace, "bg")
            == {"torchship.dev/modelservice": "bg", "torchship.dev/revision": blue_revision}
        ),
        30,
    )
    status = get_json(control_plane, "msvc", "bg", "-n", namespace)["status"]
    assert {r["version"]: r["weight"] for r in status["revisions"]} == {"v1": 100, "v2": 0}
    # One GPU frees up per replica scaled away: at 1 replica green fits, then takes over.
    control_plane.kubectl("scale", "msvc/bg", "--replicas=1", "-n", namespace)
    wait_for(lambda: split(control_plane, namespace) == {"v1": 0, "v2": 1}, 90)
    msvc_ready(control_plane, namespace, "msvc/bg", timeout=90)
    assert service_selector(control_plane, namespace, "bg") == {"torchship.dev/modelservice": "bg"}
    status = get_json(control_plane, "msvc", "bg", "-n", namespace)["status"]
    phases = {r["version"]: (r["weight"], r["phase"]) for r in status["revisions"]}
    assert phases == {"v1": (0, "Retired"), "v2": (100, "Serving")}
    # The A10 GPUs go back before another test asks for them.
    control_plane.kubectl("delete", "msvc/bg", "-n", namespace)
    wait_for(lambda: not get_json(control_plane, "pods", "-n", namespace)["items"], 60)


def test_a_canary_step_without_a_pause_waits_for_promoted_step(control_plane, operator, namespace):
    rollout = {"strategy": "Canary", "steps": [{"weight": 50}]}
    apply(control_plane, namespace, "manual", model=model("v1"), replicas=2, rollout=rollout)
    msvc_ready(control_plane, namespace, "msvc/manual")
    apply(control_plane, namespace, "manual", model=model("v2"), replicas=2, rollout=rollout)
    awaiting = ready_reason(control_plane, namespace, "manual", "AwaitingPromotion", "Progressing")
    waiting = wait_for(awaiting, 60)
    assert waiting["status"] == "True"
    time.sleep(3)  # it stays there
    assert split(control_plane, namespace) == {"v1": 1, "v2": 1}
    assert awaiting()
    promoted = rollout | {"promotedStep": 0}
    apply(control_plane, namespace, "manual", model=model("v2"), replicas=2, rollout=promoted)
    wait_for(lambda: split(control_plane, namespace) == {"v1": 0, "v2": 2}, 60)
    msvc_ready(control_plane, namespace, "msvc/manual")


def test_env_value_from_reaches_the_pods_and_stays_converged(control_plane, operator, namespace):
    env = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    apply(control_plane, namespace, "envfrom", runtime={"env": env})
    msvc_ready(control_plane, namespace, "msvc/envfrom")
    (deployment,) = get_json(control_plane, "deployments", "-n", namespace)["items"]
    rendered = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e for e in rendered}
    assert by_name["HF_TOKEN"]["valueFrom"] == env[0]["valueFrom"]
    # The API server defaults fieldRef.apiVersion; that is no drift to correct.
    assert by_name["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    time.sleep(2)
    since = utc_now()
    time.sleep(8)
    assert operator.writes(control_plane, namespace, since) == []


def test_runtime_class_name_is_set_and_a_missing_one_is_reported(
    control_plane, operator, namespace
):
    runtime_class = cluster_scoped("node.k8s.io/v1", "RuntimeClass", "gpu", namespace)
    runtime_class["handler"] = "nvidia"
    name = runtime_class["metadata"]["name"]
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(runtime_class))
    try:
        gpu = {"count": 1, "product": "NVIDIA-H100-80GB-HBM3", "runtimeClassName": name}
        apply(control_plane, namespace, "classy", gpu=gpu, replicas=1)
        msvc_ready(control_plane, namespace, "msvc/classy")
        (pod,) = get_json(control_plane, "pods", "-n", namespace)["items"]
        assert pod["spec"]["runtimeClassName"] == name

        missing = gpu | {"runtimeClassName": "no-such-class"}
        apply(control_plane, namespace, "classless", gpu=missing, replicas=1)
        failed = wait_for(ready_reason(control_plane, namespace, "classless", "FailedCreate"), 60)
        assert 'RuntimeClass "no-such-class" not found' in failed["message"], failed["message"]
    finally:
        control_plane.kubectl("delete", "runtimeclass", name, check=False)


def test_auth_mounts_the_token_and_the_runtime_refuses_requests_without_it(
    control_plane, operator, namespace, tmp_path: Path
):
    token = "s3cret-token"
    control_plane.kubectl(
        "create",
        "secret",
        "generic",
        "model-token",
        "-n",
        namespace,
        f"--from-literal=token={token}",
    )
    auth = {"tokenSecretRef": {"name": "model-token"}}
    apply(control_plane, namespace, "guarded", auth=auth, replicas=1)
    msvc_ready(control_plane, namespace, "msvc/guarded")
    (deployment,) = get_json(control_plane, "deployments", "-n", namespace)["items"]
    pod_spec = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod_spec["volumes"] if v["name"] == "auth"]
    assert volume["secret"]["secretName"] == "model-token"
    (mount,) = [m for m in pod_spec["containers"][0]["volumeMounts"] if m["name"] == "auth"]
    env = container_env(pod_spec)
    token_file = env["TORCHSHIP_AUTH_TOKEN_FILE"]
    assert token_file.startswith(mount["mountPath"] + "/")
    assert not any(token in json.dumps(e) for e in pod_spec["containers"][0]["env"])

    # The Secret's key as the kubelet would project it, read back from the API server.
    secret = get_json(control_plane, "secret", "model-token", "-n", namespace)
    projected = tmp_path / "auth" / Path(token_file).name
    projected.parent.mkdir()
    projected.write_bytes(base64.b64decode(secret["data"][volume["secret"]["items"][0]["key"]]))
    model_file = modelfiles.write("torchscript", tmp_path / "files")
    local = {k: v for k, v in env.items() if k not in ("TORCHSHIP_PORT", "TORCHSHIP_DEVICE")}
    local |= {
        "TORCHSHIP_MODEL_URI": str(model_file.path),
        "TORCHSHIP_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "TORCHSHIP_AUTH_TOKEN_FILE": str(projected),
        "TORCHSHIP_DEVICE": "cpu",
        "TORCHSHIP_DRAIN_SECONDS": "0",
    }
    with serving(tmp_path, **local) as running:
        url = running.url
        body = {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [1, modelfiles.WIDTH],
                 "data": [0.0] * modelfiles.WIDTH}
            ]
        }  # fmt: skip
        infer = f"{url}/v2/models/guarded/infer"
        assert httpx.post(infer, json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(infer, json=body, headers=wrong).status_code == 401
        right = {"Authorization": f"Bearer {token}"}
        assert httpx.post(infer, json=body, headers=right).status_code == 200
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200  # probes stay open


def test_revisions_past_the_history_limit_are_deleted(control_plane, operator, namespace):
    rollout = {"revisionHistoryLimit": 1}
    since = utc_now()
    # v1 goes when v3 comes: one old revision is kept, at 0 replicas.
    for version, after in (
        ("v1", {"v1": 1}),
        ("v2", {"v1": 0, "v2": 1}),
        ("v3", {"v2": 0, "v3": 1}),
    ):
        apply(control_plane, namespace, "pruned", model=model(version), rollout=rollout)
        wait_for(lambda want=after: split(control_plane, namespace) == want, 60)
    msvc_ready(control_plane, namespace, "msvc/pruned")
    deletes = [
        w["objectRef"]
        for w in operator.writes(control_plane, namespace, since)
        if w["verb"] == "delete" and w["objectRef"].get("resource") == "deployments"
    ]
    assert len(deletes) == 1, deletes
