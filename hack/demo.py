#!/usr/bin/env python3
"""The main job on the embedded default, end to end:

1. a local control plane with kwok's fake GPU nodes and one real node (hack/testenv.py), the
   operator and runtime images built from the Dockerfile and imported into that node,
2. the ModelService CRD installed and the operator running,
3. a model file on a PersistentVolume, and a sample ModelService that serves it from its
   claim: its pod runs the runtime image on the real node and becomes Ready through its probes;
   a GPU sample placed on kwok's H100 nodes beside it,
4. one Open Inference Protocol request answered by that pod, through
   `kubectl port-forward svc/sample`.

Each phase prints how long it took.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import harness  # siblings in hack/
import testenv

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent

HEADER = """\
apiVersion: torchship.dev/v1alpha1
kind: ModelService
metadata:
  name: {name}
  namespace: demo
spec:
  model:
    uri: pvc://models/mlp/v1/model.pt
    format: torchscript
    version: "v1"
"""
SAMPLE = (
    HEADER.format(name="sample")
    + """\
    inputs: [{name: input__0, datatype: FP32, shape: [-1, 64]}]
  runtime:
    batching: {maxBatchSize: 32, maxDelayMs: 5}
  replicas: 1
"""
)
GPU_SAMPLE = (
    HEADER.format(name="sample-h100")
    + """\
  gpu:
    count: 1
    product: NVIDIA-H100-80GB-HBM3
  replicas: 2
"""
)

timings: list[tuple[str, float]] = []


@contextmanager
def phase(text: str):
    print(f"\n==> {text}", flush=True)
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    timings.append((text, took))
    print(f"    ({took:.1f} s)", flush=True)


def main() -> int:
    if reason := testenv.real_node_unavailable():
        print(f"The demo serves from a pod on a real local node, and this machine cannot run one: "
              f"{reason}.", file=sys.stderr)  # fmt: skip
        return 1
    with tempfile.TemporaryDirectory(prefix="torchship-demo-") as tmp_dir:
        tmp = Path(tmp_dir)
        with phase("building (or reusing) the control plane's binaries and the two images"):
            bin_dir = testenv.build_binaries()
            images = testenv.build_images()
            for image in images:
                print(f"    {image.name}: {image.stat().st_size / 2**30:.2f} GiB")
        with phase("starting the control plane, kwok's GPU nodes and the real node"):
            plane = testenv.ControlPlane(
                workdir=tmp / "cluster", bin_dir=bin_dir, real_node=True, images=images
            )
            plane.start(timeout=300)
        operator: harness.OperatorProcess | None = None
        try:
            print(plane.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product").stdout)
            with phase("installing the CRDs and starting the operator"):
                plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
                plane.wait_established()
                operator = harness.start_operator(plane.env, tmp / "operator.log")
            with phase("a model file on a PersistentVolume, and the sample ModelServices"):
                model_path = tmp / "model.pt"
                harness.save_torchscript(harness.mlp((64, 128, 10)), model_path)
                plane.kubectl("create", "namespace", "demo")
                plane.kubectl(
                    "label", "namespace", "demo", "pod-security.kubernetes.io/enforce=restricted"
                )
                plane.model_volume("demo", "models", {"mlp/v1/model.pt": model_path})
                print(SAMPLE)
                plane.kubectl("apply", "-f", "-", input=SAMPLE)
                plane.kubectl("apply", "-f", "-", input=GPU_SAMPLE)
            with phase("waiting for the sample to become Ready (its pod's real probes)"):
                plane.kubectl(
                    "wait", "-n", "demo", "--for=condition=Ready", "msvc/sample",
                    "--timeout=300s", timeout=330,
                )  # fmt: skip
                plane.kubectl(
                    "wait", "-n", "demo", "--for=condition=Ready", "msvc/sample-h100",
                    "--timeout=120s", timeout=150,
                )  # fmt: skip
            print(plane.kubectl("get", "msvc", "-n", "demo").stdout)
            print(plane.kubectl("get", "pods", "-n", "demo", "-o", "wide").stdout)
            with phase("one inference request (OIP v2), through kubectl port-forward svc/sample"):
                with plane.port_forward("demo", "svc/sample", 8080) as port:
                    answer = infer(f"http://127.0.0.1:{port}")
                print(json.dumps(answer, indent=2))
            print("\nDone: the ModelService is Ready and its pod answered.\n")
            for text, took in timings:
                print(f"  {took:7.1f} s  {text}")
            return 0
        finally:
            if operator is not None:
                harness.stop(operator.proc, 20)
            plane.stop()


def infer(base: str) -> dict:
    request = {
        "id": "demo-1",
        "inputs": [
            {
                "name": "input__0",
                "datatype": "FP32",
                "shape": [1, 64],
                "data": [i / 64 for i in range(64)],
            }
        ],
    }
    print(f"POST {base}/v2/models/sample/infer")
    req = urllib.request.Request(
        f"{base}/v2/models/sample/infer",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


if __name__ == "__main__":
    sys.exit(main())
