"""What a pod's runtime container does with the environment the operator rendered for it:
parse it with the runtime's own settings model and load the model it names, in this process.

Used by the operator-to-runtime contract test and by the examples test. Only the model's
location is local (a file where the pod would download or mount it); every other setting is
exactly the rendered one, except `device` when the test machine lacks what the pod would have.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from torchship_runtime.model import Model, create_model
from torchship_runtime.settings import RuntimeSettings


def container_env(
    pod_spec: Mapping[str, Any], resolved: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The runtime container's environment as the kubelet would set it: literal values as they
    are (no value is ""), valueFrom ones from `resolved` (what the Secret or ConfigMap holds)."""
    (container,) = [c for c in pod_spec["containers"] if c["name"] == "runtime"]
    out: dict[str, str] = {}
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            out[entry["name"]] = (resolved or {})[entry["name"]]
        else:
            out[entry["name"]] = entry.get("value", "")
    return out


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ with no TORCHSHIP_* variable but those in `env`, for the block."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("TORCHSHIP_")]:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def local_device(device: str) -> str:
    """The pod's device, or cpu when the pod would have a GPU and this machine has none."""
    return "cpu" if device == "cuda" and not torch.cuda.is_available() else device


def load_as_pod(
    env: Mapping[str, str],
    workdir: Path,
    uri: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> tuple[RuntimeSettings, Model]:
    """Parse `env` as the runtime does and load its model: `uri` replaces the model's location
    when given; downloads go to `workdir`/cache and pvc:// resolves under `workdir`/pvc."""
    local = dict(env) | {
        "TORCHSHIP_MODEL_CACHE_DIR": str(workdir / "cache"),
        "TORCHSHIP_PVC_ROOT": str(workdir / "pvc"),
        "TORCHSHIP_DEVICE": local_device(env.get("TORCHSHIP_DEVICE", "auto")),
    }
    if uri is not None:
        local["TORCHSHIP_MODEL_URI"] = uri
    with environment(local | dict(extra or {})):
        settings = RuntimeSettings()
        model = create_model(settings)
        model.load()
    return settings, model


def pvc_file(uri: str, workdir: Path) -> Path:
    """Where a pvc://claim/path URI's file lies under load_as_pod's mount root."""
    return workdir / "pvc" / uri.removeprefix("pvc://")
