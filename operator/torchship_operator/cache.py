"""The model cache (spec.model.cache), pure: its PersistentVolumeClaim and the Job that fills
it, what a finished Job says, and which caches nothing uses any more. What the pods mount, and
the claim's name, are cache_mount.py's.

A cache is named by its ModelService and the source's identity (uri and version): the same
source, in any revision, is the same claim, filled once; a changed source is a new claim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import api, render
from .cache_mount import MOUNT, VOLUME, cache_name

LABEL_CACHE = "torchship.dev/model-cache"
FILL_BACKOFF_LIMIT = 3


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
