"""Autoscaling, revisions and rollouts on the real control plane with kwok."""

from __future__ import annotations

import json
import time

from helpers import condition, get_json, wait_for
from test_modelservice import msvc, utc_now, wait_ready


def apply(control_plane, namespace: str, name: str, **spec) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc(name, **spec))


def split(control_plane, namespace: str) -> dict[str, int]:
    """Replicas per model version, from the revisions' Deployments."""
    out: dict[str, int] = {}
    for d in get_json(control_plane, "deployments", "-n", namespace)["items"]:
        version = d["metadata"]["labels"].get("app.kubernetes.io/version", "?")
        out[version] = out.get(version, 0) + d["spec"]["replicas"]
    return out


def ready(control_plane, namespace: str, name: str, timeout: int = 90) -> None:
    """Rolled out and serving (see test_modelservice.wait_ready)."""
    wait_ready(control_plane, namespace, f"msvc/{name}", timeout)


def model(version: str) -> dict:
    return {"uri": "https://models.example.com/m.pt", "format": "torchscript", "version": version}


def test_hpa_scales_the_modelservice_through_its_scale_subresource(
    control_plane, operator, namespace
):
    scaling = {"minReplicas": 2, "maxReplicas": 5, "metrics": [{"type": "cpu", "target": 70}]}
    apply(control_plane, namespace, "auto", autoscaling=scaling)
    # Until the operator has created it, kubectl answers NotFound with nothing on stdout.
    hpa = wait_for(
        lambda: (
            control_plane.kubectl(
                "get", "hpa", "auto", "-n", namespace, "-o", "json", check=False
            ).stdout
        )
    )
    hpa = json.loads(hpa)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "torchship.dev/v1alpha1",
        "kind": "ModelService",
        "name": "auto",
    }
    # The HPA controller raises spec.replicas (the operator never writes spec)...
    wait_for(
        lambda: get_json(control_plane, "msvc", "auto", "-n", namespace)["spec"]["replicas"] == 2,
        60,
    )
    ready(control_plane, namespace, "auto")
    assert split(control_plane, namespace) == {"?": 2}
    # ...and moves the total when its bounds move.
    scaling["minReplicas"] = 3
    apply(control_plane, namespace, "auto", autoscaling=scaling)
    wait_for(lambda: split(control_plane, namespace) == {"?": 3}, 60)
    # Autoscaling off: the HPA goes and spec.replicas rules again.
    apply(control_plane, namespace, "auto", replicas=1)
    wait_for(
        lambda: (
            control_plane.kubectl("get", "hpa", "auto", "-n", namespace, check=False).returncode
            != 0
        )
    )
    wait_for(lambda: split(control_plane, namespace) == {"?": 1}, 60)


def test_canary_advances_on_its_own_with_the_split_right_at_each_step(
    control_plane, operator, namespace
):
    steps = [{"weight": 10, "pauseSeconds": 4}, {"weight": 50, "pauseSeconds": 4}]
    rollout = {"strategy": "Canary", "steps": steps}
    apply(control_plane, namespace, "canary", model=model("v1"), replicas=10, rollout=rollout)
    ready(control_plane, namespace, "canary")
    apply(control_plane, namespace, "canary", model=model("v2"), replicas=10, rollout=rollout)

    seen: list[tuple[int, int]] = []
    weights: list[dict[str, int]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        current = split(control_plane, namespace)
        pair = (current.get("v1", 0), current.get("v2", 0))
        if not seen or seen[-1] != pair:
            seen.append(pair)
        status = get_json(control_plane, "msvc", "canary", "-n", namespace)["status"]
        by_version = {r.get("version"): r["weight"] for r in status.get("revisions", [])}
        if not weights or weights[-1] != by_version:
            weights.append(by_version)
        if pair == (0, 10) and condition({"status": status}, "Ready").get("status") == "True":
            break
        time.sleep(0.3)
    assert (9, 1) in seen, seen
    assert (5, 5) in seen, seen
    assert seen[-1] == (0, 10), seen
    assert seen.index((9, 1)) < seen.index((5, 5))
    assert {"v1": 90, "v2": 10} in weights, weights
    assert {"v1": 50, "v2": 50} in weights, weights
    assert weights[-1].get("v2") == 100, weights
    status = get_json(control_plane, "msvc", "canary", "-n", namespace)["status"]
    assert [r["phase"] for r in status["revisions"] if r.get("version") == "v1"] == ["Retired"]


def test_a_canary_that_cannot_become_ready_is_aborted_and_stays_aborted(
    control_plane, operator, namespace
):
    rollout = {
        "strategy": "Canary",
        "steps": [{"weight": 50, "pauseSeconds": 5}],
        "progressDeadlineSeconds": 10,
    }
    apply(control_plane, namespace, "doomed", model=model("v1"), replicas=2, rollout=rollout)
    ready(control_plane, namespace, "doomed")
    nowhere = {"count": 1, "product": "NVIDIA-B200"}
    apply(
        control_plane,
        namespace,
        "doomed",
        model=model("v2"),
        replicas=2,
        rollout=rollout,
        gpu=nowhere,
    )

    def degraded():
        obj = get_json(control_plane, "msvc", "doomed", "-n", namespace)
        cond = condition(obj, "Degraded")
        return (
            obj
            if cond.get("status") == "True"
            and obj["status"].get("rollout", {}).get("phase") == "Aborted"
            else None
        )

    obj = wait_for(degraded, timeout=60)
    cond = condition(obj, "Degraded")
    # The reason names the cause; the message says what happened and what serves now.
    assert cond["reason"] == "WaitingForGPU"
    assert "made no progress for 10s" in cond["message"]
    assert "nodes are available" in cond["message"]
    wait_for(lambda: split(control_plane, namespace) == {"v1": 2, "v2": 0}, 30)
    assert (
        condition(get_json(control_plane, "msvc", "doomed", "-n", namespace), "Available")["status"]
        == "True"
    )

    time.sleep(3)
    since = utc_now()
    time.sleep(10)
    assert split(control_plane, namespace) == {"v1": 2, "v2": 0}
    assert operator.writes(control_plane, namespace, since) == []
    events = get_json(control_plane, "events", "-n", namespace)["items"]
    assert len([e for e in events if e["reason"] == "RolloutAborted"]) == 1


def test_rolling_update_with_max_surge_zero_completes_on_a_full_gpu_node(
    control_plane, operator, namespace
):
    a10 = {"count": 1, "product": "NVIDIA-A10"}  # the only A10 node has 2 GPUs
    rollout = {"maxSurge": 0, "maxUnavailable": 1}
    apply(control_plane, namespace, "full", model=model("v1"), replicas=2, gpu=a10, rollout=rollout)
    ready(control_plane, namespace, "full")
    apply(control_plane, namespace, "full", model=model("v2"), replicas=2, gpu=a10, rollout=rollout)
    wait_for(lambda: split(control_plane, namespace) == {"v1": 0, "v2": 2}, 90)
    ready(control_plane, namespace, "full")
    pods = get_json(control_plane, "pods", "-n", namespace)["items"]
    running = [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]
    ]
    assert {p["metadata"]["labels"]["app.kubernetes.io/version"] for p in running} == {"v2"}


def test_rolling_back_reuses_the_kept_revision(control_plane, operator, namespace):
    apply(control_plane, namespace, "back", model=model("v1"), replicas=2)
    ready(control_plane, namespace, "back")
    (v1,) = get_json(control_plane, "deployments", "-n", namespace)["items"]
    apply(control_plane, namespace, "back", model=model("v2"), replicas=2)
    wait_for(lambda: split(control_plane, namespace) == {"v1": 0, "v2": 2}, 90)
    ready(control_plane, namespace, "back")
    apply(control_plane, namespace, "back", model=model("v1"), replicas=2)
    wait_for(lambda: split(control_plane, namespace) == {"v1": 2, "v2": 0}, 90)
    ready(control_plane, namespace, "back")
    deployments = get_json(control_plane, "deployments", "-n", namespace)["items"]
    assert len(deployments) == 2  # no new Deployment for the rollback
    again = next(d for d in deployments if d["metadata"]["name"] == v1["metadata"]["name"])
    assert again["metadata"]["uid"] == v1["metadata"]["uid"]


def test_a_paused_canary_is_ready_and_progressing_and_a_pipeline_waits_for_its_end(
    control_plane, operator, namespace
):
    """Through a canary, Ready says the service answers at its capacity (it never stops) and
    Progressing where the rollout is; the waits of docs/rollouts.md hold until it is over."""
    rollout = {"strategy": "Canary", "steps": [{"weight": 50}]}
    apply(control_plane, namespace, "piped", model=model("v1"), replicas=2, rollout=rollout)
    ready(control_plane, namespace, "piped")
    before = condition(get_json(control_plane, "msvc", "piped", "-n", namespace), "Ready")
    assert before["status"] == "True"

    apply(control_plane, namespace, "piped", model=model("v2"), replicas=2, rollout=rollout)
    generation = get_json(control_plane, "msvc", "piped", "-n", namespace)["metadata"]["generation"]
    msvc = ["-n", namespace, "msvc/piped"]
    control_plane.kubectl(
        "wait", *msvc, f"--for=jsonpath={{.status.observedGeneration}}={generation}",
        "--timeout=60s",
    )  # fmt: skip

    def paused() -> dict | None:
        obj = get_json(control_plane, "msvc", "piped", "-n", namespace)
        awaiting = condition(obj, "Progressing").get("reason") == "AwaitingPromotion"
        return obj if awaiting and split(control_plane, namespace) == {"v1": 1, "v2": 1} else None

    obj = wait_for(paused, 60)
    ready_now, progressing = condition(obj, "Ready"), condition(obj, "Progressing")
    assert (ready_now["status"], ready_now["reason"]) == ("True", "Ready")
    assert ready_now["lastTransitionTime"] == before["lastTransitionTime"]  # never False
    assert progressing["status"] == "True"
    assert obj["status"]["rollout"]["phase"] == "Paused"
    # A pipeline's wait for the end of the rollout holds while the step waits for a person...
    held = control_plane.kubectl(
        "wait", *msvc, "--for=condition=Progressing=False", "--timeout=5s", check=False
    )
    assert held.returncode != 0, held.stdout
    # ...and returns once it is promoted and over.
    promoted = rollout | {"promotedStep": 0}
    apply(control_plane, namespace, "piped", model=model("v2"), replicas=2, rollout=promoted)
    control_plane.kubectl("wait", *msvc, "--for=condition=Progressing=False", "--timeout=60s")
    control_plane.kubectl("wait", *msvc, "--for=condition=Degraded=False", "--timeout=0s")
    obj = get_json(control_plane, "msvc", "piped", "-n", namespace)
    assert split(control_plane, namespace) == {"v1": 0, "v2": 2}
    assert condition(obj, "Progressing")["reason"] == "RolloutComplete"
    assert condition(obj, "Ready")["lastTransitionTime"] == before["lastTransitionTime"]
    assert obj["status"]["rollout"]["phase"] == "Stable"
