"""The Argo CD and Flux health checks on ModelServices as the operator really reports them:
each state is brought about on the cluster, the live object read back, and both checks
evaluated on it. The objects are also what tests/delivery/fixtures/health holds: set
TORCHSHIP_CAPTURE_HEALTH_FIXTURES=1 to write them there again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from healthchecks import argocd_health, flux_health
from helpers import condition, get_json, wait_for
from operatorprocess import paused
from test_rollouts import apply, model

FIXTURES = Path(__file__).resolve().parents[1] / "delivery" / "fixtures" / "health"
# Fields that differ on every run and that neither check reads.
VOLATILE = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "annotations")


def captured(obj: dict, name: str) -> dict:
    """The object as a fixture: run-specific metadata dropped, the test's namespace called
    ml, times fixed."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in VOLATILE}
    text = json.dumps({**obj, "metadata": meta}, indent=2)
    out = json.loads(text.replace(obj["metadata"]["namespace"], "ml"))
    for cond in out.get("status", {}).get("conditions", []):
        cond["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    if out.get("status", {}).get("rollout"):
        out["status"]["rollout"] = {
            k: ("2026-01-01T00:00:00.000000Z" if k.endswith("At") else v)
            for k, v in out["status"]["rollout"].items()
        }
    if os.environ.get("TORCHSHIP_CAPTURE_HEALTH_FIXTURES"):
        (FIXTURES / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def live(control_plane, namespace: str, name: str) -> dict:
    return get_json(control_plane, "msvc", name, "-n", namespace)


def reason_is(
    control_plane, namespace: str, name: str, reason: str, kind: str = "Ready"
) -> Callable[[], dict]:
    def check():
        obj = live(control_plane, namespace, name)
        return obj if condition(obj, kind).get("reason") == reason else None

    return check


def check_both(obj: dict, argocd: str, flux: str) -> None:
    assert argocd_health(obj)["status"] == argocd, argocd_health(obj)
    assert flux_health(obj) == flux


def test_healthy_serving(control_plane, operator, namespace):
    apply(control_plane, namespace, "resnet", model=model("v3"), replicas=2)
    obj = wait_for(reason_is(control_plane, namespace, "resnet", "Ready"), 60)
    check_both(captured(obj, "healthy-serving"), "Healthy", "Current")


def test_degraded_unschedulable(control_plane, operator, namespace):
    gpu = {"count": 1, "product": "NVIDIA-B200"}
    apply(control_plane, namespace, "resnet", model=model("v3"), gpu=gpu, replicas=2)
    obj = wait_for(reason_is(control_plane, namespace, "resnet", "WaitingForGPU"), 60)
    check_both(captured(obj, "degraded-unschedulable"), "Degraded", "Failed")


def test_degraded_apply_refused(control_plane, operator, namespace):
    behavior = {"scaleUp": {"policies": [{"type": "Bogus", "value": 1, "periodSeconds": 60}]}}
    scaling = {"minReplicas": 1, "maxReplicas": 2, "behavior": behavior}
    apply(control_plane, namespace, "resnet", model=model("v3"), autoscaling=scaling)
    obj = wait_for(reason_is(control_plane, namespace, "resnet", "ApplyRefused"), 60)
    check_both(captured(obj, "degraded-apply-refused"), "Degraded", "Failed")


def test_suspended_canary_paused(control_plane, operator, namespace):
    """A paused canary serves every replica (Ready) and waits (Progressing): Argo CD says
    Suspended; kstatus, which has no such state, Current."""
    rollout = {"strategy": "Canary", "steps": [{"weight": 50, "pauseSeconds": 600}]}
    apply(control_plane, namespace, "resnet", model=model("v2"), replicas=2, rollout=rollout)
    wait_for(reason_is(control_plane, namespace, "resnet", "Ready"), 60)
    apply(control_plane, namespace, "resnet", model=model("v3"), replicas=2, rollout=rollout)
    paused_step = reason_is(control_plane, namespace, "resnet", "CanaryPaused", "Progressing")
    obj = wait_for(lambda: (o := paused_step()) and condition(o, "Ready")["status"] == "True" and o)
    check_both(captured(obj, "suspended-canary"), "Suspended", "Current")


@pytest.mark.parametrize("first", [True, False], ids=["no-status", "generation-behind"])
def test_progressing_before_the_operator_has_looked(control_plane, operator, namespace, first):
    if not first:
        apply(control_plane, namespace, "resnet", model=model("v2"), replicas=2)
        wait_for(reason_is(control_plane, namespace, "resnet", "Ready"), 60)
    with paused(operator):
        apply(control_plane, namespace, "resnet", model=model("v3"), replicas=2)
        obj = live(control_plane, namespace, "resnet")
    assert obj.get("status", {}).get("observedGeneration") != obj["metadata"]["generation"]
    name = "progressing-no-status" if first else "progressing-generation-behind"
    check_both(captured(obj, name), "Progressing", "InProgress")
