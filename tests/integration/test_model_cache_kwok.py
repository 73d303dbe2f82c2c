"""The model cache on the control plane: a claim bound to a volume, a fill Job that completes
(kwok completes Jobs' pods), the pods mounting the claim read-only, a new cache for a changed
source and the old one deleted once no revision uses it."""

from __future__ import annotations

import json

from helpers import condition, get_json, wait_for

CLASS = "torchship-cache-test"


def msvc(version: str) -> str:
    return json.dumps(
        {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": "cached"},
            "spec": {
                "model": {
                    "uri": "https://models.example.com/resnet.pt",
                    "format": "torchscript",
                    "version": version,
                    "cache": {"size": "1Gi", "storageClassName": CLASS},
                },
                "replicas": 2,
                "rollout": {"revisionHistoryLimit": 0},
            },
        }
    )


def filled(control_plane, namespace: str, name: str) -> dict | None:
    job = get_json(control_plane, "job", name, "-n", namespace)
    return job if job.get("status", {}).get("succeeded") == 1 else None


def caches(control_plane, namespace: str) -> dict[str, dict]:
    claims = get_json(control_plane, "pvc", "-n", namespace)["items"]
    return {c["metadata"]["name"]: c for c in claims}


def test_a_cache_is_filled_once_mounted_read_only_and_follows_the_source(
    control_plane, operator, namespace
):
    names = [f"{namespace}-cache-{i}" for i in range(2)]
    for pv in names:
        control_plane.writable_volume(pv, CLASS)
    try:
        check_cache(control_plane, namespace)
    finally:
        control_plane.kubectl("delete", "pv", *names, "--wait=false", "--ignore-not-found")


def check_cache(control_plane, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("v1"))

    def ready():
        ms = get_json(control_plane, "msvc", "cached", "-n", namespace)
        return ms if condition(ms, "Ready").get("status") == "True" else None

    wait_for(ready, timeout=90)
    (name,) = caches(control_plane, namespace)
    claim = caches(control_plane, namespace)[name]
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # kwok's pods are Ready without running their init containers; the Job ends on its own.
    job = wait_for(lambda: filled(control_plane, namespace, name), timeout=60)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["fetch"]
    (deployment,) = get_json(control_plane, "deployments", "-n", namespace)["items"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": name, "readOnly": True}
    events = get_json(control_plane, "events", "-n", namespace)["items"]
    assert [e["reason"] for e in events if e["reason"] == "CacheFilling"] == ["CacheFilling"]

    # A new version is a new source: a new cache; the old one goes with the old revision.
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("v2"))

    def replaced():
        names = set(caches(control_plane, namespace))
        return names if len(names) == 1 and name not in names and ready() else None

    (new,) = wait_for(replaced, timeout=120)
    wait_for(lambda: filled(control_plane, namespace, new), timeout=60)
    reasons = [e["reason"] for e in get_json(control_plane, "events", "-n", namespace)["items"]]
    assert "CacheDeleted" in reasons
