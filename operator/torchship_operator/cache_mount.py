"""The model cache as the serving pods see it: the claim's name (by the source's identity),
where they mount it, and the environment that points the runtime at it. Pure; render.py puts
it into the pod template, cache.py makes the claim and the Job that fills it.
"""

from __future__ import annotations

import hashlib

from . import api

MOUNT = "/mnt/torchship-cache"
# With runtime.compile: the claim's kernels/ directory, the one part of it the pods write, where
# each compiles into and the next replica finds what an earlier one compiled.
KERNELS_SUBPATH = "kernels"
KERNELS_MOUNT = "/var/cache/torchship-kernels"
VOLUME = "model-cache"
# The pods' fetch waits this long for the Job to fill the claim, then restarts (and waits again).
WAIT_SECONDS = 3600


def identity(spec: api.ModelServiceSpec) -> str:
    return f"{spec.model.uri}@{spec.model.version or ''}"


def cache_name(owner_name: str, spec: api.ModelServiceSpec) -> str:
    """At most 62 characters: the Job's name is a label value on its pods."""
    digest = hashlib.sha256(f"{owner_name}\n{identity(spec)}".encode()).hexdigest()[:10]
    return f"{owner_name[:45].rstrip('-')}-cache-{digest}"


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
