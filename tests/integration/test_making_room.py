"""A rollout on a full GPU cluster (rollout.whenFull) on the real control plane: kwok GPU nodes
of a product no other test uses, every GPU taken by the first revision. With `maxSurge: 1` the
surge pod finds no GPU: Wait (the default) aborts at the deadline as before; MakeRoom has old
pods give theirs up one at a time, the very pods it marked, and completes."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import testenv
from helpers import condition, get_json, wait_for
from test_rollouts import apply, model, ready, split


@contextlib.contextmanager
def gpu_nodes(control_plane, product: str, nodes: int, gpus: int) -> Iterator[list[str]]:
    """kwok nodes with `gpus` GPUs of `product` each, Ready before the test uses them."""
    fake = [
        testenv.FakeNode(f"gpu-{product.lower()}-{i}", gpus=gpus, product=product)
        for i in range(nodes)
    ]
    items = [testenv.node_manifest(n) for n in fake]
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=listed)
    names = [n.name for n in fake]
    try:
        for name in names:
            control_plane.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s")
        yield names
    finally:
        control_plane.kubectl("delete", "node", *names, "--wait=false", check=False)


def ready_pods(control_plane, namespace: str) -> int:
    deployments = get_json(control_plane, "deployments", "-n", namespace)["items"]
    return sum(d.get("status", {}).get("readyReplicas", 0) for d in deployments)


def events(control_plane, namespace: str, reason: str) -> list[dict]:
    items = get_json(control_plane, "events", "-n", namespace)["items"]
    return [e for e in items if e["reason"] == reason]


def test_make_room_completes_a_rollout_that_would_deadlock_with_max_surge_1(
    control_plane, operator, namespace
):
    with gpu_nodes(control_plane, "NVIDIA-L4", nodes=2, gpus=2) as nodes:
        gpu = {"count": 1, "product": "NVIDIA-L4"}
        rollout = {"whenFull": "MakeRoom"}  # maxSurge 1, maxUnavailable 0 (the defaults)
        spec = {"replicas": 4, "gpu": gpu, "rollout": rollout}
        apply(control_plane, namespace, "room", model=model("v1"), **spec)
        ready(control_plane, namespace, "room")  # all 4 GPUs taken
        apply(control_plane, namespace, "room", model=model("v2"), **spec)

        reasons, fewest = set(), 4
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            obj = get_json(control_plane, "msvc", "room", "-n", namespace)
            reasons.add(condition(obj, "Progressing").get("reason"))
            fewest = min(fewest, ready_pods(control_plane, namespace))
            available = condition(obj, "Available").get("status")
            assert available == "True", obj["status"]  # one pod short is what MakeRoom allows
            # Ready says the service serves at capacity, also mid-rollout: the rollout's end is
            # Progressing False.
            done = condition(obj, "Progressing").get("status") == "False"
            if done and split(control_plane, namespace) == {"v1": 0, "v2": 4}:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not complete: {obj.get('status')}")

        assert fewest >= 3  # total - max(maxUnavailable, 1), and never fewer
        assert obj["status"]["rollout"]["phase"] == "Stable"
        # Each move said so once, with the node and the resource (the Ready reason's Event).
        told = events(control_plane, namespace, "MakingRoom")
        assert told, reasons  # (the condition itself may pass between two polls)
        message = told[0]["message"]
        assert (
            message.startswith("making room: revision ")
            and "(v1) gives up 1 pod on node" in message
        )
        assert any(f"node {n} (1 nvidia.com/gpu)" in message for n in nodes), message
        assert message.endswith("(v2)'s pending pod")

        # The operator marked each old pod it gave up; the next pod removed was that one.
        pods = [
            e
            for e in sorted(
                control_plane.audit_events(), key=lambda e: e["requestReceivedTimestamp"]
            )
            if e.get("objectRef", {}).get("resource") == "pods"
            and e.get("objectRef", {}).get("namespace") == namespace
        ]
        marks = [
            i
            for i, e in enumerate(pods)
            if e["verb"] == "patch" and e["user"]["username"] == operator.user
        ]
        assert marks, "no old pod was marked to give up"
        for i in marks:
            name = pods[i]["objectRef"]["name"]
            removed = next(e for e in pods[i + 1 :] if e["verb"] == "delete")
            assert removed["objectRef"]["name"] == name, (name, removed["objectRef"])


def test_wait_keeps_the_surge_pod_waiting_and_aborts_at_the_deadline(
    control_plane, operator, namespace
):
    with gpu_nodes(control_plane, "NVIDIA-L40S", nodes=1, gpus=2):
        gpu = {"count": 1, "product": "NVIDIA-L40S"}
        rollout = {"progressDeadlineSeconds": 10}  # whenFull: Wait, the default
        spec = {"replicas": 2, "gpu": gpu, "rollout": rollout}
        apply(control_plane, namespace, "wait", model=model("v1"), **spec)
        ready(control_plane, namespace, "wait")
        apply(control_plane, namespace, "wait", model=model("v2"), **spec)

        def aborted():
            obj = get_json(control_plane, "msvc", "wait", "-n", namespace)
            phase = obj["status"].get("rollout", {}).get("phase")
            return obj if phase == "Aborted" else None

        obj = wait_for(aborted, timeout=60)
        degraded = condition(obj, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "WaitingForGPU"
        assert "Insufficient nvidia.com/gpu" in degraded["message"]
        wait_for(lambda: split(control_plane, namespace) == {"v1": 2, "v2": 0}, 30)
        assert ready_pods(control_plane, namespace) == 2  # no old pod gave up its GPU
        assert events(control_plane, namespace, "MakingRoom") == []
        writes = operator.writes(control_plane, namespace)
        assert not [w for w in writes if w["objectRef"].get("resource") == "pods"]


def test_make_room_is_refused_for_blue_green(control_plane, crds, namespace):
    rollout = {"strategy": "BlueGreen", "whenFull": "MakeRoom"}
    refused = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "torchship.dev/v1alpha1",
                "kind": "ModelService",
                "metadata": {"name": "bg"},
                "spec": {"model": model("v1"), "rollout": rollout},
            }
        ),
        check=False,
    )
    assert refused.returncode != 0
    assert "rollout.whenFull MakeRoom gives up old pods" in refused.stderr
