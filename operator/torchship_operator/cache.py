"""The model cache (spec.model.cache), pure: its PersistentVolumeClaim and the Job that fills
it, what the pods mount, what a finished Job says, and which caches nothing uses any more.

A cache is named by its ModelService and the source's identity (uri and version): the same
source, in any revision, is the same claim, filled once; a changed source is a new claim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import api, render

LABEL_CACHE = "torchship.dev/model-cache"
MOUNT = "/mnt/torchship-cache"
# With runtime.compile: the claim's kernels/ directory, the one part of it the pods write; every
# replica and revision mounts it at the same path and points its compile caches there.
KERNELS_SUBPATH = "kernels"
KERNELS_MOUNT = "/var/cache/torchship-kernels"
VOLUME = "model-cache"
FILL_BACKOFF_LIMIT = 3
# The pods' fetch waits this long for the Job to fill the claim, then restarts (and waits again).
WAIT_SECONDS = 3600


def identity(spec: api.ModelServiceSpec) -> str:
    return f"{spec.model.uri}@{spec.model.version or ''}"


def cache_name(owner_name: str, spec: api.ModelServiceSpec) -> str:
    """At most 62 characters: the Job's name is a label value on its pods."""
    digest = hashlib.sha256(f"{owner_name}\n{identity(spec)}".encode()).hexdigest()[:10]
    return f"{owner_name[:45].rstrip('-')}-cache-{digest}"


def labels(owner: render.Owner, spec: api.ModelServiceSpec) -> dict[str, str]:
    return {**render.common_labels(owner.name, spec), LABEL_CACHE: cache_name(owner.name, spec)}


def render_claim(owner: render.Owner, spec: api.ModelServiceSpec) -> dict[str, Any]:
    cache = spec.model.cache
    assert cache is not None
    claim: dict[str, Any] = {
        "accessModes": [cache.access_mode],
        "resources": {"requests": {"storage": cache.size}},
    }
    if cache.storage_class_name is not None:
        claim["storageClassName"] = cache.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": cache_name(owner.name, spec),
            "namespace": owner.namespace,
            "labels": labels(owner, spec),
            "ownerReferences": [owner.reference],
        },
        "spec": claim,
    }


def render_job(owner: render.Owner, spec: api.ModelServiceSpec, image: str) -> dict[str, Any]:
    """`torchship-runtime fetch` into the claim, as the pods' own fetch would, once."""
    name = cache_name(owner.name, spec)
    pod = render.pod_spec(owner.name, spec.model_copy(update={"gpu": None}), image)
    runtime = pod["containers"][0]
    env = [e for e in runtime["env"] if e["name"] != "TORCHSHIP_FETCH_WAIT_SECONDS"]
    container = {
        "name": "fetch",
        "image": image,
        "args": ["fetch"],
        "env": env,
        "securityContext": runtime["securityContext"],
        "volumeMounts": [
            {"name": VOLUME, "mountPath": MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePath": render.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    # Not the pods' labels: the fill's pod is not one of the ModelService's serving pods.
    pod_labels = {LABEL_CACHE: name, "app.kubernetes.io/managed-by": render.MANAGED_BY}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels(owner, spec),
            "ownerReferences": [owner.reference],
        },
        "spec": {
            "backoffLimit": FILL_BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod["securityContext"],
                    "containers": [container],
                    "volumes": [
                        {"name": VOLUME, "persistentVolumeClaim": {"claimName": name}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def pod_volume(owner_name: str, spec: api.ModelServiceSpec) -> tuple[dict, list[dict]]:
    """The claim as the serving pods mount it: the model read-only; with runtime.compile, its
    kernels/ directory read-write as well (the kubelet makes it, with the claim's own mode)."""
    name = cache_name(owner_name, spec)
    model = {"name": VOLUME, "mountPath": MOUNT, "readOnly": True}
    if not spec.runtime.compile:
        volume = {"name": VOLUME, "persistentVolumeClaim": {"claimName": name, "readOnly": True}}
        return volume, [model]
    kernels = {"name": VOLUME, "mountPath": KERNELS_MOUNT, "subPath": KERNELS_SUBPATH}
    return {"name": VOLUME, "persistentVolumeClaim": {"claimName": name}}, [model, kernels]


def pod_env(spec: api.ModelServiceSpec) -> dict[str, str]:
    """The runtime reads downloads from the claim; its fetch waits for the Job's, never
    downloads itself. Compiled kernels go to the claim's kernels/ (Inductor's and Triton's
    caches key their entries by torch version, device and graph, and write them atomically, so
    replicas and revisions share the directory safely)."""
    env = {"TORCHSHIP_MODEL_CACHE_DIR": MOUNT, "TORCHSHIP_FETCH_WAIT_SECONDS": str(WAIT_SECONDS)}
    if spec.runtime.compile:
        env |= {
            "TORCHINDUCTOR_CACHE_DIR": f"{KERNELS_MOUNT}/inductor",
            "TRITON_CACHE_DIR": f"{KERNELS_MOUNT}/triton",
        }
        if spec.runtime.compile.ahead_of_time:  # packages are named by model, torch and device
            env["TORCHSHIP_COMPILE_CACHE_DIR"] = f"{KERNELS_MOUNT}/aot"
    return env


# -- what the cluster says ------------------------------------------------------------------


def job_state(job: Mapping[str, Any] | None) -> str:
    """Filling, Filled or Failed."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return "Filled" if cond["type"] == "Complete" else "Failed"
    return "Filling"


def job_failure(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> str:
    """The Job's reason and message, and its last pod's own words."""
    cond = next(
        c for c in job["status"]["conditions"] if c["type"] == "Failed" and c["status"] == "True"
    )
    said = ""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            said = (terminated.get("message") or "").strip() or said
    name = job["metadata"]["name"]
    text = f"the Job {name} that fills the model cache failed ({cond.get('reason', 'Failed')}"
    text += f": {cond['message']})" if cond.get("message") else ")"
    return f"{text}: {said}" if said else text


def claims_in_use(deployments: Sequence[Mapping[str, Any]]) -> set[str]:
    """The cache claims the revisions' pod templates mount (kept revisions included: a
    rollback to one finds its model there)."""
    used = set()
    for deployment in deployments:
        template = deployment.get("spec", {}).get("template", {}).get("spec", {})
        for volume in template.get("volumes", []):
            if volume.get("name") == VOLUME:
                used.add(volume["persistentVolumeClaim"]["claimName"])
    return used


def unused(caches: Iterable[str], deployments: Sequence[Mapping[str, Any]], desired: str | None):
    """The caches to delete: neither the desired revision's nor any kept revision's."""
    keep = claims_in_use(deployments) | ({desired} if desired else set())
    return sorted(set(caches) - keep)
