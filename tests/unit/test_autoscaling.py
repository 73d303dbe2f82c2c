"""The HorizontalPodAutoscaler rendered from spec.autoscaling."""

from __future__ import annotations

import pytest

from torchship_operator import api
from torchship_operator.autoscaling import render_hpa

LABELS = {"app.kubernetes.io/instance": "resnet", "torchship.dev/modelservice": "resnet"}
OWNER = {
    "apiVersion": "torchship.dev/v1alpha1",
    "kind": "ModelService",
    "name": "resnet",
    "uid": "0f4e1c7a",
    "controller": True,
    "blockOwnerDeletion": True,
}


def render(autoscaling: dict) -> dict:
    return render_hpa("resnet", "ml", LABELS, OWNER, autoscaling)


def test_every_metric_kind_and_behavior():
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }
    hpa = render(
        {
            "minReplicas": 2,
            "maxReplicas": 8,
            "metrics": [
                {"type": "cpu", "target": 70},
                {"type": "memory", "target": 80},
                {"type": "inflight", "target": 8},
            ],
            "behavior": behavior,
        }
    )
    assert hpa == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": "resnet",
            "namespace": "ml",
            "labels": LABELS,
            "ownerReferences": [OWNER],
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "torchship.dev/v1alpha1",
                "kind": "ModelService",
                "name": "resnet",
            },
            "minReplicas": 2,
            "maxReplicas": 8,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                },
                {
                    "type": "Resource",
                    "resource": {
                        "name": "memory",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "torchship_inflight_requests"},
                        "target": {"type": "AverageValue", "averageValue": "8"},
                    },
                },
            ],
            "behavior": behavior,
        },
    }
    # The result shares nothing with the input: a later edit of one cannot change the other.
    hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["value"] = 5
    assert behavior["scaleDown"]["policies"][0]["value"] == 1
    hpa["metadata"]["labels"]["x"] = "y"
    assert "x" not in LABELS


def test_defaults_leave_out_what_was_not_asked_for():
    hpa = render({"maxReplicas": 3})
    assert hpa["spec"] == {
        "scaleTargetRef": {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "name": "resnet",
        },
        "minReplicas": 1,
        "maxReplicas": 3,
    }


def test_from_the_api_model_as_the_operator_stores_it():
    spec = api.AutoscalingSpec.model_validate(
        {"maxReplicas": 4, "metrics": [{"type": "inflight", "target": 12}]}
    )
    stored = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    hpa = render(stored)
    assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 4
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "torchship_inflight_requests"},
                "target": {"type": "AverageValue", "averageValue": "12"},
            },
        }
    ]
    assert "behavior" not in hpa["spec"]


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="gpu"):
        render({"maxReplicas": 3, "metrics": [{"type": "gpu", "target": 50}]})
