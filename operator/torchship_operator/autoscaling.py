"""Pure rendering of the HorizontalPodAutoscaler that scales a ModelService.

Its scale target is the ModelService itself (the CRD's scale subresource), not a Deployment:
the HPA moves the total and the rollout state machine splits it between revisions, so a
rollout and the autoscaler never fight over one Deployment's replicas.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from . import api

# The runtime's gauge, per pod, as a custom-metrics adapter serves it (docs/autoscaling.md).
INFLIGHT_METRIC = "torchship_inflight_requests"
RESOURCE_METRICS = ("cpu", "memory")


def metric(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of spec.autoscaling.metrics as an autoscaling/v2 MetricSpec."""
    kind, target = entry["type"], entry["target"]
    if kind == "inflight":
        return {
            "type": "Pods",
            "pods": {
                "metric": {"name": INFLIGHT_METRIC},
                # A Quantity: the average of in-flight requests over the pods.
                "target": {"type": "AverageValue", "averageValue": str(target)},
            },
        }
    if kind in RESOURCE_METRICS:
        return {
            "type": "Resource",
            "resource": {
                "name": kind,
                # Percent of the pods' requests: the pods must request cpu / memory.
                "target": {"type": "Utilization", "averageUtilization": int(target)},
            },
        }
    raise ValueError(f"unknown autoscaling metric type {kind!r}")


def render_hpa(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner_reference: Mapping[str, Any],
    autoscaling: Mapping[str, Any],
) -> dict[str, Any]:
    """`autoscaling` is spec.autoscaling as stored in the CRD (camelCase keys)."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name},
        "minReplicas": autoscaling.get("minReplicas", 1),
        "maxReplicas": autoscaling["maxReplicas"],
    }
    metrics = [metric(m) for m in autoscaling.get("metrics") or ()]
    if metrics:  # none: the HPA's own default (80% cpu)
        spec["metrics"] = metrics
    if autoscaling.get("behavior"):
        spec["behavior"] = copy.deepcopy(dict(autoscaling["behavior"]))
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [dict(owner_reference)],
        },
        "spec": spec,
    }
