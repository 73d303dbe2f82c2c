"""A pod's start phases on the real node: a model served over HTTP, slowly, from this machine;
the ModelService's Ready reason passes Downloading, Loading and Ready in that order, and the
Events give each finished phase's duration."""

from __future__ import annotations

import re
import time

import pytest
from harness import file_server
from helpers import condition, get_json, wait_for
from workload import model_service, served_model

from torchship_operator.reconcilers.report import FIRST_STATUS_GRACE

pytestmark = pytest.mark.usefixtures("real_operator")
# Seconds the server waits before it sends the model: longer than a new ModelService's first
# status is held while its pods come up as expected, so that Downloading is written.
DELAY = FIRST_STATUS_GRACE + 6.0


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
