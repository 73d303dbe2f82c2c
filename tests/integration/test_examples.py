"""Every ModelService a user is shown (examples/, the README's, the kustomize overlays) applied
to the cluster, Ready with its pods where it asks to be placed, and its pod's runtime settings
loaded by the runtime on CPU with a real model file of its format, fetched from its own source
served on loopback.

`check_example` is the one path each manifest takes: apply, Ready, placement (`expected_nodes`),
the `kubectl get` listing, then `run_pod_settings` on the rendered pod. On the fake (kwok) nodes
the pods do not run, so `load_in_process` loads their settings here; for the examples that
need no GPU (`needs_gpu`), a node that runs the runtime image can check the same manifests by
passing a `run_pod_settings` that serves the model source and waits for the pod itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import modelfiles
import pytest
import yaml
from helpers import get_json, wait_for
from modelsources import served
from podenv import container_env, load_as_pod

ROOT = Path(__file__).resolve().parents[2]
GPU_NODES = {"NVIDIA-H100-80GB-HBM3": {"gpu-h100-0", "gpu-h100-1"}, "NVIDIA-A10": {"gpu-a10-0"}}


@dataclass(frozen=True)
class Example:
    id: str
    manifest: Callable[[Any], str]  # control_plane -> YAML with one ModelService


def file_example(path: str) -> Example:
    return Example(Path(path).stem, lambda _: (ROOT / path).read_text())


def readme_example(_: Any) -> str:
    """The README's first YAML block: the ModelService it opens with."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"```yaml\n(.*?)```", text, re.S).group(1)


def overlay_example(overlay: str) -> Example:
    def build(control_plane) -> str:
        path = ROOT / "examples" / "kustomize" / "overlays" / overlay
        return control_plane.kubectl("kustomize", str(path)).stdout

    return Example(f"kustomize-{overlay}", build)


EXAMPLES = [
    *(file_example(str(p.relative_to(ROOT))) for p in sorted((ROOT / "examples").glob("*.yaml"))),
    Example("readme", readme_example),
    overlay_example("dev"),
    overlay_example("prod"),
]


def the_modelservice(manifest: str, namespace: str) -> dict[str, Any]:
    """The manifest's one ModelService, moved into the test's namespace."""
    (body,) = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "ModelService"]
    body["metadata"]["namespace"] = namespace
    return body


def needs_gpu(body: dict[str, Any]) -> bool:
    """GPU examples stay on the fake GPU nodes (placement); the others can run for real."""
    return bool((body["spec"].get("gpu") or {}).get("count"))


def expected_nodes(spec: dict[str, Any]) -> set[str]:
    gpu = spec.get("gpu") or {}
    if not needs_gpu({"spec": spec}):
        return {"cpu-0"}
    if product := gpu.get("product"):
        return GPU_NODES[product]
    return set().union(*GPU_NODES.values())


def check_placement(control_plane, namespace: str, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    pods = get_json(
        control_plane, "pods", "-n", namespace, "-l", f"torchship.dev/modelservice={name}"
    )["items"]
    assert len(pods) == body["spec"].get("replicas", 1)
    assert {p["spec"]["nodeName"] for p in pods} <= expected_nodes(body["spec"])
    gpu = body["spec"].get("gpu") or {}
    for pod in pods:
        limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
        if gpu.get("count"):
            assert limits[gpu.get("resourceName", "nvidia.com/gpu")] == str(gpu["count"])
        if gpu.get("product"):
            assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == gpu["product"]


def check_listing(control_plane, namespace: str, body: dict[str, Any]) -> None:
    """`kubectl get msvc` as the README shows it."""
    name, spec = body["metadata"]["name"], body["spec"]
    table = control_plane.kubectl("get", "msvc", name, "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "PHASE", "VERSION", "REPLICAS", "URL", "AGE"]
    row = table[1].split()
    url = f"http://{name}.{namespace}.svc.cluster.local:{spec.get('service', {}).get('port', 8080)}"
    version, replicas = spec["model"]["version"], str(spec.get("replicas", 1))
    assert row[:6] == [name, "True", "Ready", version, replicas, url]


def load_in_process(pod_spec: dict[str, Any], body: dict[str, Any], workdir: Path) -> None:
    """The pod's runtime settings, parsed and loaded here (device cuda runs on CPU without a
    GPU), with the model fetched from the manifest's own source on loopback."""
    model = body["spec"]["model"]
    model_file = modelfiles.write(model["format"], workdir / "files")
    env = container_env(pod_spec)
    with served(model["uri"], model_file.path, workdir) as (uri, extra):
        settings, loaded = load_as_pod(env, workdir, uri=uri, extra=extra)
    assert loaded.ready
    runtime = body["spec"].get("runtime", {})
    assert settings.dtype == runtime.get("dtype", "float32")
    assert settings.model_version == model.get("version", "")
    user_env = {e["name"]: e["value"] for e in runtime.get("env", []) if "value" in e}
    assert user_env.items() <= env.items()


def check_example(
    control_plane,
    namespace: str,
    example: Example,
    workdir: Path,
    run_pod_settings: Callable[[dict, dict, Path], None] = load_in_process,
) -> None:
    body = the_modelservice(example.manifest(control_plane), namespace)
    name = body["metadata"]["name"]
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"msvc/{name}", "--timeout=90s"
    )
    check_placement(control_plane, namespace, body)
    check_listing(control_plane, namespace, body)
    (deployment,) = get_json(
        control_plane, "deployments", "-n", namespace, "-l", f"torchship.dev/modelservice={name}"
    )["items"]
    run_pod_settings(deployment["spec"]["template"]["spec"], body, workdir)
    # The GPUs go back before the next example asks for them.
    control_plane.kubectl("delete", "-n", namespace, f"msvc/{name}")
    wait_for(
        lambda: (
            not get_json(
                control_plane, "pods", "-n", namespace, "-l", f"torchship.dev/modelservice={name}"
            )["items"]
        ),
        timeout=60,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_example_is_ready_and_its_settings_load_in_the_runtime(
    control_plane, operator, namespace, example, tmp_path
):
    check_example(control_plane, namespace, example, tmp_path)
