"""A pod's start phases on the real node: a model served over HTTP, slowly, from this machine;
the ModelService's Ready reason passes Downloading, Loading and Ready in that order, and the
Events give each finished phase's duration. A pod that asks for a GPU the node does not have yet
waits (WaitingForGPU) until the node advertises one, and a model whose warm-up is slow is seen
WarmingUp: the Events Scheduled and WarmedUp say how long each took."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from harness import file_server
from helpers import condition, get_json, wait_for
from workload import model_service, served_model

from torchship_operator.reconcilers.report import FIRST_STATUS_GRACE

pytestmark = pytest.mark.usefixtures("real_operator")
# Seconds the server waits before it sends the model: longer than a new ModelService's first
# status is held while its pods come up as expected, so that Downloading is written.
DELAY = FIRST_STATUS_GRACE + 6.0
# Seconds the node goes without a GPU once the ModelService reports WaitingForGPU.
HOLD = 8.0
# Seconds the slow model's warm-up takes: many probe periods (1 s), so WarmingUp is seen.
WARM_UP = 10.0
GPU = "nvidia.com/gpu"
# A handler whose own warm-up is slow (a model compiling its kernels would be), serving doubles.
SLOW_HANDLER = f"""
import time


class SlowWarmUp:
    def warmup(self):
        time.sleep({WARM_UP})

    def predict(self, data):
        return data["input__0"] * 2
"""


def operator_events(plane, ns: str, name: str) -> dict[str, str]:
    events = get_json(plane, "events", "-n", ns)["items"]
    return {
        e["reason"]: e["message"]
        for e in events
        if e["involvedObject"]["name"] == name
        and e["source"].get("component") == "torchship-operator"
    }


def test_downloading_then_loading_then_ready_with_durations(
    real_plane, restricted_namespace, mlp_file, tmp_path
):
    ns, name = restricted_namespace, "phases"
    www = served_model(tmp_path, mlp_file)
    hits: list[str] = []
    reasons: list[str] = []
    with file_server(www, real_plane.node.slot.host_ip, hits=hits, delay=DELAY) as base:
        real_plane.kubectl(
            "apply", "-n", ns, "-f", "-", input=model_service(name, f"{base}/mlp.pt")
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ready = condition(get_json(real_plane, "msvc", name, "-n", ns), "Ready")
            reason = ready.get("reason")
            if reason and (not reasons or reasons[-1] != reason):
                reasons.append(reason)
            if ready.get("status") == "True":
                break
            time.sleep(0.5)
    assert hits == ["/mlp.pt"]  # fetched once, by the init container
    # In order; a short phase may pass between two looks, Downloading (21 s) may not.
    order = ["PullingImage", "Downloading", "Loading", "WarmingUp", "Ready"]
    seen = [r for r in reasons if r in order]
    assert seen == sorted(seen, key=order.index), reasons
    assert "Downloading" in seen and seen[-1] == "Ready", reasons

    def told():
        events = operator_events(real_plane, ns, name)
        return events if {"ModelFetched", "ModelLoaded"} <= set(events) else None

    events = wait_for(told, timeout=30)
    fetched = re.fullmatch(
        r"pod \S+: model fetched in ([\d.]+) s, ([\d.]+) kB", events["ModelFetched"]
    )
    assert fetched, events["ModelFetched"]
    assert DELAY <= float(fetched.group(1)) < DELAY + 30
    assert float(fetched.group(2)) == pytest.approx(mlp_file.stat().st_size / 1000, abs=0.1)
    assert re.fullmatch(
        r"pod \S+: model loaded( and warmed up)? in [\d.]+ s", events["ModelLoaded"]
    )
    (pod,) = get_json(real_plane, "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")[
        "items"
    ]
    (fetch,) = pod["status"]["initContainerStatuses"]
    assert fetch["name"] == "fetch" and fetch["state"]["terminated"]["exitCode"] == 0


@pytest.fixture
def node_without_gpu(real_plane) -> Iterator[str]:
    """The real node's name; whatever GPU capacity a test advertises on it is withdrawn after."""
    node = real_plane.node.name
    try:
        yield node
    finally:
        gone = {"status": {"capacity": {GPU: None}, "allocatable": {GPU: None}}}
        real_plane.kubectl(
            "patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(gone)
        )
        wait_for(lambda: GPU not in get_json(real_plane, "node", node)["status"]["allocatable"])


def test_a_pod_waits_for_its_gpu_then_warms_up_with_durations(
    real_plane, restricted_namespace, node_without_gpu, tmp_path
):
    ns, name, node = restricted_namespace, "gpu-wait", node_without_gpu
    handler = tmp_path / "slow_warmup.py"
    handler.write_text(SLOW_HANDLER)
    real_plane.model_volume(ns, "models", {"slow_warmup.py": handler})
    manifest = json.loads(model_service(name, "pvc://models/slow_warmup.py"))
    manifest["spec"]["model"] |= {"format": "handler", "entrypoint": "slow_warmup:SlowWarmUp"}
    # One GPU, on the real node only: kwok's GPU nodes cannot take it; the runtime uses the CPU.
    manifest["spec"]["gpu"] = {"count": 1, "nodeSelector": {"kubernetes.io/hostname": node}}
    manifest["spec"]["runtime"] = {"device": "cpu"}
    real_plane.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))

    def reason() -> str | None:
        return condition(get_json(real_plane, "msvc", name, "-n", ns), "Ready").get("reason")

    wait_for(lambda: reason() == "WaitingForGPU", timeout=90)
    time.sleep(HOLD)
    (pod,) = get_json(real_plane, "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")[
        "items"
    ]
    assert not pod["spec"].get("nodeName"), pod["spec"].get("nodeName")
    # An extended resource the kubelet keeps once it is on the node's status (no device plugin).
    offer = {"status": {"capacity": {GPU: "1"}}}
    real_plane.kubectl(
        "patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(offer)
    )
    reasons: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ready = condition(get_json(real_plane, "msvc", name, "-n", ns), "Ready")
        if ready.get("reason") and (not reasons or reasons[-1] != ready["reason"]):
            reasons.append(ready["reason"])
        if ready.get("status") == "True":
            break
        time.sleep(0.5)
    assert reasons[-1] == "Ready" and "WarmingUp" in reasons, reasons
    (pod,) = get_json(real_plane, "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")[
        "items"
    ]
    assert pod["spec"]["nodeName"] == node

    def told():
        events = operator_events(real_plane, ns, name)
        return events if {"Scheduled", "ModelLoaded", "WarmedUp"} <= set(events) else None

    events = wait_for(told, timeout=30)
    scheduled = re.fullmatch(r"pod \S+: got its GPU after waiting (\d+) s", events["Scheduled"])
    assert scheduled, events["Scheduled"]
    assert HOLD <= float(scheduled.group(1)) < HOLD + 90
    # Loading and warm-up told apart: the startup probe passed before the readiness probe.
    assert re.fullmatch(r"pod \S+: model loaded in [\d.]+ s", events["ModelLoaded"])
    warmed = re.fullmatch(r"pod \S+: warmed up in ([\d.]+) s", events["WarmedUp"])
    assert warmed, events["WarmedUp"]
    assert WARM_UP - 3 <= float(warmed.group(1)) < WARM_UP + 15
