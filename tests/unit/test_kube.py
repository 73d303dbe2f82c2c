"""How apply compares a rendered object with the live one: a converged object needs no request,
and every difference that matters (drift, a field we stopped wanting, a scale) does."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from torchship_operator import api, render
from torchship_operator.kube import (
    FINGERPRINT,
    Applied,
    classify,
    contains,
    fingerprinted,
    merge_patch,
    resource_of,
)

OWNER = render.Owner(name="mlp", namespace="ml", uid="u")
SPEC = api.ModelServiceSpec.model_validate(
    {
        "model": {"uri": "s3://b/m.pt", "format": "torchscript", "version": "v1"},
        "runtime": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
        "gpu": {"count": 1, "product": "NVIDIA-A10"},
    }
)


def desired(replicas: int = 2, spec: api.ModelServiceSpec = SPEC) -> dict[str, Any]:
    revision = render.revision_hash(spec, "img:1")
    return fingerprinted(render.render_deployment(OWNER, spec, revision, replicas, "img:1"))


def as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server hands back: defaults filled in, quantities normalised, extras added."""
    live = copy.deepcopy(obj)
    live["metadata"] |= {"uid": "d", "resourceVersion": "7", "generation": 1, "managedFields": []}
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    pod = live["spec"]["template"]["spec"]
    pod |= {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default"}
    container = pod["containers"][0]
    container |= {
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
    }
    container["resources"]["requests"]["cpu"] = "1000m"
    container["startupProbe"]["successThreshold"] = 1
    live["status"] = {"replicas": 2, "readyReplicas": 2}
    return live


def test_stored_defaults_and_normalised_quantities_count_as_equal():
    assert contains(as_stored(desired()), desired())


def test_drift_in_a_field_we_own_is_seen():
    live = as_stored(desired())
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert not contains(live, desired())
    assert classify(desired(), live) is Applied.CORRECTED


def test_an_extra_list_entry_is_drift():
    live = as_stored(desired())
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    assert not contains(live, desired())


def test_a_key_added_to_an_atomic_map_is_drift():
    live = as_stored(desired())
    live["spec"]["template"]["spec"]["nodeSelector"]["extra"] = "x"
    assert not contains(live, desired())
    live = as_stored(desired())
    live["metadata"]["labels"]["extra"] = "x"  # labels merge: someone else's key is theirs
    assert contains(live, desired())
    live["spec"]["selector"]["matchLabels"]["extra"] = "x"
    assert not contains(live, desired())


def test_a_scale_is_told_apart_from_drift():
    live = as_stored(desired(replicas=2))
    assert not contains(live, desired(replicas=4))
    assert classify(desired(replicas=4), live) is Applied.SCALED
    live["spec"]["replicas"] = 5  # scaled by hand
    assert classify(desired(replicas=2), live) is Applied.SCALED


def test_a_field_we_stopped_wanting_changes_the_fingerprint():
    with_label = desired()
    without = copy.deepcopy(with_label)
    del without["metadata"]["annotations"][FINGERPRINT]
    del without["metadata"]["labels"]["app.kubernetes.io/component"]
    without = fingerprinted(without)
    live = as_stored(with_label)
    # The live object still holds every field of the new desired state but one annotation...
    assert not contains(live, without)
    assert classify(without, live) is Applied.UPDATED


def test_fingerprint_is_stable_and_ignores_replicas():
    one, two = desired(replicas=1), desired(replicas=2)
    assert (
        one["metadata"]["annotations"][FINGERPRINT] == two["metadata"]["annotations"][FINGERPRINT]
    )
    assert fingerprinted(one) == one  # idempotent: the annotation is not hashed into itself
    changed = api.ModelServiceSpec.model_validate(
        SPEC.model_dump(by_alias=True) | {"service": {"port": 9000}}
    )
    assert (
        desired(spec=changed)["metadata"]["annotations"][FINGERPRINT]
        != one["metadata"]["annotations"][FINGERPRINT]
    )


@pytest.mark.parametrize(
    ("live", "wanted", "equal"),
    [
        ("1", "1000m", True),
        ("1Gi", "1073741824", True),
        (2, "2", True),
        ("1Gi", "1G", False),
        ("abc", "abd", False),
        ([1, 2], [1, 2, 3], False),
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 0}, False),
    ],
)
def test_contains(live, wanted, equal):
    assert contains(live, wanted) is equal


def test_applied_is_falsy_only_when_nothing_was_written():
    assert not Applied.UNCHANGED
    assert all(a for a in Applied if a is not Applied.UNCHANGED)


def test_values_the_server_omits_count_as_equal():
    assert contains({"name": "A"}, {"name": "A", "value": ""})
    assert contains({}, {"items": [], "labels": {}, "flag": False, "x": None})
    assert not contains({}, {"replicas": 0})  # not omitted: zero is a value here
    assert not contains({"name": "A"}, {"name": "A", "value": "1"})


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1, "gone": 2}, {"a": 1}, {"gone": None}),
        (
            {"rollout": {"phase": "Progressing", "targetRevision": "x", "step": 1}},
            {"rollout": {"phase": "Stable", "step": 1}},
            {"rollout": {"phase": "Stable", "targetRevision": None}},
        ),
        (
            {"conditions": [{"type": "A"}]},
            {"conditions": [{"type": "B"}]},
            {"conditions": [{"type": "B"}]},
        ),
        ({}, {"url": "http://x"}, {"url": "http://x"}),
        ({"rollout": "odd"}, {"rollout": {"phase": "Stable"}}, {"rollout": {"phase": "Stable"}}),
    ],
)
def test_merge_patch_removes_what_went(old, new, patch):
    assert merge_patch(old, new) == patch


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/apis/apps/v1/namespaces/ml/deployments/a", "deployments"),
        ("/apis/apps/v1/namespaces/ml/deployments/a/scale", "deployments/scale"),
        (
            "/apis/torchship.dev/v1alpha1/namespaces/ml/modelservices/a/status",
            "modelservices/status",
        ),
        ("/api/v1/namespaces/ml/events", "events"),
        ("/apis/coordination.k8s.io/v1/namespaces/torchship/leases", "leases"),
        ("/apis/coordination.k8s.io/v1/namespaces/torchship/leases/torchship", "leases"),
    ],
)
def test_writes_are_counted_by_resource(path, resource):
    assert resource_of(path) == resource
