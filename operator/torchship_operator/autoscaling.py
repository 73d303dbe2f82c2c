"""Pure rendering of the HorizontalPodAutoscaler that scales a ModelService.

Its scale target is the ModelService itself (the CRD's scale subresource), so the HPA moves
the total and the operator splits it between revisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import api

INFLIGHT_METRIC = "torchship_inflight_requests"


def metric(entry: Mapping[str, Any]) -> dict[str, Any]:
    if entry["type"] == "inflight":
        return {
            "type": "Pods",
            "pods": {
                "metric": {"name": INFLIGHT_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(entry["target"])},
            },
        }
    return {
        "type": "Resource",
        "resource": {
            "name": entry["type"],  # cpu | memory
            "target": {"type": "Utilization", "averageUtilization": entry["target"]},
        },
    }


def render_hpa(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner_reference: Mapping[str, Any],
    autoscaling: Mapping[str, Any],
) -> dict[str, Any]:
    """`autoscaling` is spec.autoscaling as stored (camelCase)."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name},
        "minReplicas": autoscaling.get("minReplicas", 1),
        "maxReplicas": autoscaling["maxReplicas"],
        "metrics": [metric(m) for m in autoscaling.get("metrics", [])],
    }
    if autoscaling.get("behavior"):
        spec["behavior"] = dict(autoscaling["behavior"])
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
